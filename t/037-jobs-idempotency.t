# Idempotent submits: async_job ... idempotency=on and the Idempotency-Key
# header (draft-ietf-httpapi-idempotency-key-header). The same key with the
# same method, URI and body is the same job (the same 202, Location and
# id), on either of two workers and when the repeats race; the same key
# with another request is 422; a key that is not one sf-string of 1..255
# bytes is 400. The backend is a second server of the same nginx.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AsyncNginx;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $port + 1;

sub start {
    my (%args) = @_;
    my $zone = $args{zone} // 'zone=jobs:1m ttl=1h';
    my $ng = AsyncNginx->new(name => 'jobs-idem', workers => 2, http => <<"EOF");
    async_job_zone $zone;
    client_body_buffer_size 1k;
    server {
        listen 127.0.0.1:$backend;
        location /slow { echo_sleep 2; echo "slow"; }
        location /instant { echo "instant"; }
    }
    server {
        listen 127.0.0.1:\$PORT;
        location /submit { async_job jobs /internal/slow idempotency=on; }
        location /other { async_job jobs /internal/slow idempotency=on; }
        location /instant { async_job jobs /internal/instant idempotency=on; }
        location /waiting {
            async_job jobs /internal/slow wait=10s idempotency=on;
        }
        location /plain { async_job jobs /internal/slow; }
        location /off { async_job jobs /internal/slow idempotency=off; }
        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:$backend/;
        }
        location /jobs/ { async_job_status jobs; }
        location = /status { async_status; }
    }
EOF
    $ng->start;
    return $ng;
}

sub submit {
    my ($ng, $path, $key, $body, %more) = @_;
    my %h = defined $key ? ('Idempotency-Key' => $key) : ();
    my $r = $ng->request($more{method} // 'POST', $path,
        headers => { %h, %{ $more{headers} // {} } }, body => $body // '');
    $r->{json} = eval { decode_json($r->{body}) };
    return $r;
}

sub submitted {
    my ($ng) = @_;
    my $st = $ng->status or return -1;
    return $st->{job_zones}{jobs}{totals}{submitted} // -1;
}

sub completed {
    my ($ng, $id) = @_;
    return AsyncNginx::wait_until(sub {
        ($ng->get("/jobs/$id")->{body} // '') =~ /"completed"/ }, 10);
}

subtest 'the same key and request: the same job, 202, Location and id' => sub {
    my $ng = start();
    my $first = submit($ng, '/submit?a=1', '"8e03978e-40d5"', 'body');
    is($first->{status}, 202, 'first: 202');
    my $id = $first->{json}{id};
    like($id // '', qr/^[\w-]{22}$/, 'an id');
    my %loc;
    # separate connections: either worker may take each
    for my $i (1 .. 8) {
        my $again = submit($ng, '/submit?a=1', '"8e03978e-40d5"', 'body');
        is($again->{status}, 202, "repeat $i: 202");
        is($again->{json}{id}, $id, "repeat $i: the same id");
        $loc{ $again->{headers}{location} // '' }++;
    }
    is_deeply([keys %loc], ["/jobs/$id"], 'the same Location every time');
    is(submitted($ng), 1, 'one job submitted');

    # another key, or none, is another job
    my $other = submit($ng, '/submit?a=1', '"another"', 'body');
    isnt($other->{json}{id}, $id, 'another key: another job');
    my $none = submit($ng, '/submit?a=1', undef, 'body');
    isnt($none->{json}{id}, $id, 'no key: another job');

    # once finished, a repeat still names it (until the ttl)
    ok(completed($ng, $id), 'the job completed');
    my $late = submit($ng, '/submit?a=1', '"8e03978e-40d5"', 'body');
    is($late->{status}, 202, 'a repeat after the end: 202');
    is($late->{json}{id}, $id, 'the same id');
    is($late->{json}{status}, 'completed', 'showing its state');
    unlike($ng->error_log, qr/\[(error|alert|crit)\]/, 'no [error] line');
    $ng->stop;
};

subtest 'the same key with another request: 422' => sub {
    my $ng = start();
    my $first = submit($ng, '/submit?a=1', '"k1"', 'body');
    is($first->{status}, 202, 'first: 202');
    my @cases = (
        ['another body', '/submit?a=1', 'bodY'],
        ['another query', '/submit?a=2', 'body'],
        ['another URI', '/other?a=1', 'body'],
        ['no body', '/submit?a=1', ''],
    );
    for my $c (@cases) {
        my $r = submit($ng, $c->[1], '"k1"', $c->[2]);
        is($r->{status}, 422, "$c->[0]: 422");
        like($r->{body},
            qr/"error":"Idempotency-Key was used for another request"/,
            "$c->[0]: says why");
    }
    my $put = submit($ng, '/submit?a=1', '"k1"', 'body', method => 'PUT');
    is($put->{status}, 422, 'another method: 422');
    my $same = submit($ng, '/submit?a=1', '"k1"', 'body');
    is($same->{json}{id}, $first->{json}{id}, 'the original still repeats');
    is(submitted($ng), 1, 'no job made by a conflict');
    $ng->stop;
};

subtest 'a key that is not one sf-string of 1 to 255 bytes: 400' => sub {
    my $ng = start();
    my @bad = (
        ['unquoted', '8e03978e-40d5'],
        ['empty', '""'],
        ['256 bytes', '"' . ('k' x 256) . '"'],
        ['unterminated', '"abc'],
        ['a bad escape', '"a\\nb"'],
        ['with parameters', '"abc";x=1'],
        ['a list', '"a", "b"'],
        ['not ASCII', "\"caf\xc3\xa9\""],
        # the harness writes "name: value\r\n": a second header line
        ['two headers', "\"a\"\r\nIdempotency-Key: \"a\""],
    );
    for my $c (@bad) {
        my $r = submit($ng, '/submit', $c->[1], 'x');
        is($r->{status}, 400, "$c->[0]: 400");
        like($r->{body}, qr/Idempotency-Key/, "$c->[0]: says why");
    }
    my $max = submit($ng, '/submit', '"' . ('k' x 255) . '"', 'x');
    is($max->{status}, 202, '255 bytes: 202');
    my $esc = submit($ng, '/submit', '"a\\"b\\\\c"', 'x');
    is($esc->{status}, 202, 'escaped quote and backslash: 202');
    is(submit($ng, '/submit', '"a\\"b\\\\c"', 'x')->{json}{id},
        $esc->{json}{id}, 'an escaped key repeats');
    is(submitted($ng), 2, 'no job for a bad key');
    unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
    $ng->stop;
};

subtest 'idempotency off (the default): the header is not looked at' => sub {
    my $ng = start();
    for my $path ('/plain', '/off') {
        my $a = submit($ng, $path, '"same"', 'x');
        my $b = submit($ng, $path, '"same"', 'x');
        is($a->{status}, 202, "$path: 202");
        isnt($a->{json}{id}, $b->{json}{id}, "$path: two jobs");
        is(submit($ng, $path, 'unquoted', 'x')->{status}, 202,
            "$path: a bad key is no error");
    }
    $ng->stop;
};

subtest 'racing repeats make one job' => sub {
    my $ng = start();
    my @reqs = map { { method => 'POST', path => '/submit',
        headers => { 'Idempotency-Key' => '"race"' }, body => 'r' } } 1 .. 24;
    my @res = $ng->parallel(\@reqs, timeout => 10);
    my %ids;
    for my $r (@res) {
        my $j = eval { decode_json($r->{body}) } // {};
        $ids{ ($r->{status} // '-') . ' ' . ($j->{id} // '-') }++;
    }
    is(scalar(keys %ids), 1, 'one answer: ' . join(', ', keys %ids));
    like((keys %ids)[0], qr/^202 [\w-]{22}$/, 'a 202 with an id');
    is(submitted($ng), 1, 'one job submitted');
    $ng->stop;
};

subtest 'a body in a temp file is hashed whole' => sub {
    my $ng = start();
    my $big = join '', map { chr(65 + $_ % 26) } 1 .. 200000;
    my $a = submit($ng, '/submit', '"big"', $big);
    is($a->{status}, 202, '200 kB body: 202');
    is(submit($ng, '/submit', '"big"', $big)->{json}{id}, $a->{json}{id},
        'the same body: the same job');
    (my $changed = $big) =~ s/.$/!/;
    is(submit($ng, '/submit', '"big"', $changed)->{status}, 422,
        'the last byte differs: 422');
    like($ng->error_log,
        qr/a client request body is buffered to a temporary file/,
        'the body went to a file');
    $ng->stop;
};

subtest 'a key lives as long as its job' => sub {
    my $ng = start(zone => 'zone=jobs:1m ttl=1s');
    my $a = submit($ng, '/instant', '"short"', 'x');
    my $id = $a->{json}{id};
    ok(completed($ng, $id), 'done');
    ok(AsyncNginx::wait_until(sub { $ng->get("/jobs/$id")->{status} == 404 },
        5), 'expired after ttl=1s');
    my $b = submit($ng, '/instant', '"short"', 'x');
    is($b->{status}, 202, 'the key again: 202');
    isnt($b->{json}{id}, $id, 'a new job');
    ok(completed($ng, $b->{json}{id}), 'done');
    is($ng->request('DELETE', "/jobs/$b->{json}{id}")->{status}, 204,
        'deleted');
    my $c = submit($ng, '/instant', '"short"', 'y');
    is($c->{status}, 202,
        'after DELETE the key is free, even for another body');
    $ng->stop;
};

subtest 'a repeat with wait= waits for the same job' => sub {
    my $ng = start();
    my $first = submit($ng, '/waiting', '"w"', 'x',
        headers => { Prefer => 'respond-async' });
    is($first->{status}, 202, 'first: 202 at once (respond-async)');
    my $again = submit($ng, '/waiting', '"w"', 'x');
    is($again->{status}, 200, 'the repeat waits and gets the result');
    is($again->{body}, "slow\n", 'the result');
    is(submitted($ng), 1, 'one job');
    $ng->stop;
};

subtest 'no room for the key table: 503, until there is' => sub {
    # 128k: the records, then results until the zone is full: no room
    # for the keys either
    my $ng = AsyncNginx->new(name => 'jobs-idem-full', workers => 2,
        http => <<'EOF');
    async_job_zone zone=jobs:128k active=4 length=10 max_result=100k;
    server {
        listen 127.0.0.1:$PORT;
        location /blob { async_job jobs /blob.bin; }
        location /submit { async_job jobs /blob.bin idempotency=on; }
        location = /blob.bin { root html; error_page 405 =200 $uri; }
        location /jobs/ { async_job_status jobs; }
        location = /status { async_status; }
    }
EOF
    $ng->start;
    open my $fh, '>:raw', $ng->root . '/html/blob.bin' or die $!;
    print $fh 'b' x 3000;
    close $fh;
    # results of 3 kB (a page each) until one finds no room
    my (@stored, $full);
    for (1 .. 40) {
        my $id = submit($ng, '/blob', undef, '')->{json}{id} or last;
        my $st = {};
        AsyncNginx::wait_until(sub {
            $st = eval { decode_json($ng->get("/jobs/$id")->{body}) } // {};
            ($st->{status} // '') =~ /^(completed|failed)$/ }, 5);
        if (($st->{reason} // '') eq 'zone_full') {
            $full = 1;
            last;
        }
        push @stored, $id;
    }
    ok($full, scalar(@stored) . ' results fill the zone');
    my $blob = shift @stored;
    my $r = submit($ng, '/submit', '"k"', '');
    is($r->{status}, 503, 'an Idempotency-Key finds no room: 503');
    like($r->{body}, qr/no room for idempotency keys/, 'says why');
    like($ng->error_log,
        qr/\[warn\].*has no room for the Idempotency-Key table/, 'a warn line');
    is($ng->request('DELETE', "/jobs/$blob")->{status}, 204,
        'a result is deleted');
    $ng->request('DELETE', "/jobs/$_") for @stored;
    my $ok = submit($ng, '/submit', '"k"', '');
    is($ok->{status}, 202, 'then the key is taken: 202');
    is(submit($ng, '/submit', '"k"', '')->{json}{id}, $ok->{json}{id},
        'and repeats');
    $ng->stop;
};

subtest 'configuration' => sub {
    my $ng = AsyncNginx->new(name => 'jobs-idem-conf', http => <<'EOF');
    async_job_zone zone=jobs:1m;
    server {
        listen 127.0.0.1:$PORT;
        location /submit { async_job jobs /x idempotency=maybe; }
        location /jobs/ { async_job_status jobs; }
    }
EOF
    my ($rc, $out) = $ng->check_config;
    isnt($rc, 0, 'idempotency=maybe fails nginx -t');
    like($out, qr/invalid parameter "idempotency=maybe" in "async_job"/,
        'names the parameter');
};

done_testing;
