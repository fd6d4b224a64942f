# store=redis: idempotent submits and job progress across two nginx nodes
# that share one redis-server (started by the suite, as t/070 does). An
# Idempotency-Key claimed on one node names the same job on the other: the
# same 202, Location and id; another request with the key gets 422, on
# either node; racing repeats on both nodes make one job. A progress report
# on node B for a job running on node A shows in the status answer of both
# nodes, and is refused with 409 once the job has ended.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use AsyncNginx;
use RedisServer;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my ($port_a, $port_b, $backend, $redis_port) =
    ($port, $port + 1, $port + 2, $port + 5);

plan skip_all => 'redis-server is not installed'
    unless RedisServer::installed();

my $redis = RedisServer->new(port => $redis_port,
    dir => tempdir(CLEANUP => 1));
END { $redis->stop if $redis }
$redis->start;

sub node {
    my ($name, $p, $with_backend) = @_;
    my $b = $with_backend ? <<"EOF" : '';
    server {
        listen 127.0.0.1:$backend;
        location /work { echo_sleep \$arg_s; echo "slept \$arg_s"; }
    }
EOF
    my $ng = AsyncNginx->new(name => "redis-idem-$name", workers => 1,
        http => <<"EOF");
    async_job_zone zone=jobs:1m ttl=1h store=redis
                   redis=127.0.0.1:$redis_port redis_timeout=500ms;
$b
    server {
        listen 127.0.0.1:\$PORT;
        location /submit { async_job jobs /internal/work idempotency=on; }
        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:$backend/;
        }
        location /jobs/ { async_job_status jobs; }
        location /status { async_status; }
    }
EOF
    $ng->{port} = $p;
    return $ng;
}

sub json_of {
    my ($r) = @_;
    return eval { decode_json($r->{body}) } // {};
}

sub ready { return RedisServer::node_ready($_[0]) }

sub submit {
    my ($ng, $secs, $key, $body) = @_;
    my $r = $ng->request('POST', "/submit?s=$secs",
        headers => { 'Idempotency-Key' => $key }, body => $body);
    $r->{json} = json_of($r);
    return $r;
}

sub submitted {
    my ($ng) = @_;
    return json_of($ng->get('/status'))->{job_zones}{jobs}{totals}{submitted}
        // -1;
}

sub state_of {
    my ($ng, $id) = @_;
    return json_of($ng->get("/jobs/$id"))->{status} // '';
}

sub progress {
    my ($ng, $id, $body) = @_;
    return $ng->request('PUT', "/jobs/$id/progress", body => $body);
}

my $a = node('a', $port_a, 1);
my $b = node('b', $port_b, 0);
$a->start;
$b->start;
ok(ready($a) && ready($b), 'both nodes connected to Redis');

subtest 'a key claimed on A names the same job on B' => sub {
    my ($made_a, $made_b) = (submitted($a), submitted($b));
    my $first = submit($a, 2, '"order-1"', 'body one');
    is($first->{status}, 202, 'A: 202') or return;
    my $id = $first->{json}{id};
    like($id // '', qr/^[\w-]{22}$/, 'an id');
    my $loc = $first->{headers}{location};
    for my $ng ($a, $b, $b, $a) {
        my $r = submit($ng, 2, '"order-1"', 'body one');
        is($r->{status}, 202, "repeat on $ng->{port}: 202");
        is($r->{json}{id}, $id, 'the same id');
        is($r->{headers}{location}, $loc, 'the same Location');
    }
    is(submitted($a), $made_a + 1, 'A made one job');
    is(submitted($b), $made_b, 'B made none');

    my $other = submit($b, 2, '"order-1"', 'body two');
    is($other->{status}, 422, 'another body with the key on B: 422');
    like($other->{body}, qr/another request/, 'says why');
    is(submit($a, 2, '"order-1"', 'body two')->{status}, 422, 'and on A');
    is(submit($b, 3, '"order-1"', 'body one')->{status}, 422,
        'another URI with the key on B: 422');
    is(submitted($b), $made_b, 'B made no job for them');
    ok(AsyncNginx::wait_until(sub { state_of($b, $id) eq 'completed' }, 10),
        'the job completes');
    my $after = submit($b, 2, '"order-1"', 'body one');
    is($after->{json}{id}, $id, 'a repeat after the end: still that job');
    is($after->{json}{status}, 'completed', 'which is completed');
};

subtest 'a key claimed on B names the same job on A' => sub {
    my $first = submit($b, 0, '"order-2"', '');
    is($first->{status}, 202, 'B: 202') or return;
    my $r = submit($a, 0, '"order-2"', '');
    is($r->{status}, 202, 'A: 202');
    is($r->{json}{id}, $first->{json}{id}, 'the same id');
    is($r->{headers}{location}, $first->{headers}{location},
        'the same Location');
};

subtest 'repeats racing on A and B make one job' => sub {
    my $made = submitted($a) + submitted($b);
    my @r;
    for my $i (1 .. 3) {
        my $pid_a = $a->request('POST', '/submit?s=0',
            headers => { 'Idempotency-Key' => "\"race-$i\"" }, body => 'x');
        my $pid_b = $b->request('POST', '/submit?s=0',
            headers => { 'Idempotency-Key' => "\"race-$i\"" }, body => 'x');
        push @r, [$pid_a, $pid_b];
    }
    for my $pair (@r) {
        my @ids = map { json_of($_)->{id} } grep { $_->{status} == 202 } @$pair;
        ok(@ids >= 1, 'at least one 202');
        ok(!grep({ $_->{status} != 202 && $_->{status} != 409 } @$pair),
            'the other is 202 or 409 (still being processed)');
        is(scalar(keys %{ { map { $_ => 1 } @ids } }), 1, 'one id');
    }
    is(submitted($a) + submitted($b), $made + 3, 'one job per key');
};

subtest 'a key whose job was deleted makes a new job' => sub {
    my $first = submit($a, 0, '"order-3"', '');
    is($first->{status}, 202, 'A: 202') or return;
    my $id = $first->{json}{id};
    ok(AsyncNginx::wait_until(sub { state_of($b, $id) eq 'completed' }, 10),
        'completed');
    is($b->request('DELETE', "/jobs/$id")->{status}, 204, 'deleted on B');
    # the claim is taken over once it is older than its grace time
    my $again;
    ok(AsyncNginx::wait_until(sub {
        $again = submit($b, 0, '"order-3"', '');
        $again->{status} == 202
    }, 10, 0.3), 'a repeat on B: 202');
    isnt($again->{json}{id}, $id, 'for a new job');
    is(submit($a, 0, '"order-3"', '')->{json}{id}, $again->{json}{id},
        'which A names too');
};

subtest 'progress reported on B for a job running on A shows on both' => sub {
    my $r = $a->request('POST', '/submit?s=4');
    is($r->{status}, 202, 'accepted on A') or return;
    my $id = json_of($r)->{id};
    ok(AsyncNginx::wait_until(sub { state_of($b, $id) eq 'running' }, 5),
        'running');
    ok(!exists json_of($b->get("/jobs/$id"))->{progress},
        'no progress before a report');
    my $p = progress($b, $id, '{"percent":40,"message":"half way"}');
    is($p->{status}, 204, 'PUT on B: 204');
    for my $ng ($a, $b) {
        is_deeply(json_of($ng->get("/jobs/$id"))->{progress},
            { percent => 40, message => 'half way' }, "seen on $ng->{port}");
    }
    is(progress($a, $id, '{"percent":75}')->{status}, 204, 'PUT on A: 204');
    is_deeply(json_of($b->get("/jobs/$id"))->{progress},
        { percent => 75, message => '' }, 'the last report wins, on B');
    is(progress($b, $id, '{"percent":101}')->{status}, 400,
        'a bad report: 400');
    is(progress($b, 'AAAAAAAAAAAAAAAAAAAAAA', '{"percent":1}')->{status}, 404,
        'an unknown job: 404');
    ok(AsyncNginx::wait_until(sub { state_of($b, $id) eq 'completed' }, 10),
        'the job completes');
    ok(!exists json_of($b->get("/jobs/$id"))->{progress},
        'no progress once final');
    my $late = progress($b, $id, '{"percent":99}');
    is($late->{status}, 409, 'a report after the end: 409');
    is(json_of($late)->{status}, 'completed', 'which says the state');
};

for my $ng ($a, $b) {
    open my $fh, '<', $ng->root . '/logs/error.log' or next;
    my @bad = grep { /\[(error|alert|crit|emerg)\]/ } <$fh>;
    is(scalar @bad, 0, "no [error] or worse on $ng->{port}") or diag @bad;
}
$a->stop;
$b->stop;
done_testing;
