# Jobs seen over several requests: submit, poll, long-poll, result, cancel,
# callback, expiry and a full zone. The backend is a second server of the
# same nginx on port $PORT+1 (echo_sleep, then a static file or an echo).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AsyncNginx;
use IO::Socket::INET;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $port + 1;
my $hang = $port + 2; # a Perl server that notes when its client leaves

sub jobs_http {
    my ($zone, $extra) = @_;
    $extra //= '';
    return <<"EOF";
    async_job_zone $zone;
    log_format backend '"\$request" \$request_method \$uri \$status \$request_length';
    server {
        listen 127.0.0.1:$backend;
        access_log logs/backend.log backend;
        location /slow { echo_sleep 2; echo_exec /blob.bin; }
        location /quick { echo_sleep 0.3; echo "quick"; }
        location /instant { echo "instant"; }
        location /blobnow { echo_exec /blob.bin; }
        location = /blob.bin {
            root html;
            types { }
            default_type application/x-blob;
            # the job keeps the client's method: serve the file to a POST
            error_page 405 =200 \$uri;
        }
        location /hook {
            echo_read_request_body;
            echo_request_body;
        }
        location /hookfail { return 500; }
    }
    server {
        listen 127.0.0.1:\$PORT;
        location /submit { async_job jobs /internal/slow; }
        location /quick { async_job jobs /internal/quick; }
        location /instant { async_job jobs /internal/instant; }
        location /blobnow { async_job jobs /internal/blobnow; }
        location /hang { async_job jobs /hanging; }
        location /hanging {
            internal;
            proxy_pass http://127.0.0.1:$hang;
        }
        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:$backend/;
        }
        location /jobs/ { async_job_status jobs; }
        location = /status { async_status; }
        $extra
    }
EOF
}

sub start {
    my (%args) = @_;
    my $ng = AsyncNginx->new(name => 'jobs-flow', workers => $args{workers} // 2,
        http => jobs_http($args{zone} // 'zone=jobs:1m', $args{extra}));
    # the blob goes into the server root after start() made it
    $ng->start;
    open my $fh, '>:raw', $ng->root . '/html/blob.bin' or die $!;
    print $fh $args{blob} // '';
    close $fh;
    return $ng;
}

sub job_id {
    my ($res) = @_;
    my $j = eval { decode_json($res->{body}) } or return undef;
    return $j->{id};
}

sub status_of {
    my ($ng, $id, $query) = @_;
    my $r = $ng->get("/jobs/$id" . ($query // ''));
    $r->{json} = eval { decode_json($r->{body}) };
    return $r;
}

my $blob = join '', map { chr(($_ * 7 + 3) % 256) } 0 .. 70000;

subtest 'a 2 s job: 202 at once, queued/running, completed, result byte for byte' => sub {
    my $ng = start(blob => $blob);
    # the client closes its connection right after the 202
    my ($sub) = $ng->parallel([ { method => 'POST', path => '/submit?k=v',
        body => 'in' } ], timeout => 5);
    is($sub->{status}, 202, '202 Accepted');
    ok($sub->{time} < 0.5, sprintf('answered in %.3f s', $sub->{time}));
    my $id = job_id($sub);
    like($id // '', qr/^[A-Za-z0-9_-]{22}$/, '22-character id');
    is($sub->{headers}{location}, "/jobs/$id", 'Location');
    is($sub->{headers}{'retry-after'}, '1', 'Retry-After');

    my $st = status_of($ng, $id);
    is($st->{status}, 200, 'status 200');
    like($st->{json}{status}, qr/^(queued|running)$/, 'queued or running');
    is($st->{headers}{'retry-after'}, '1', 'Retry-After while running');
    my $early = $ng->get("/jobs/$id/result");
    is($early->{status}, 409, 'no result yet: 409');
    is(decode_json($early->{body})->{id}, $id, '409 carries the status');

    my $deadline = time + 8;
    do { sleep 0.2; $st = status_of($ng, $id) }
        while ($st->{json}{status} // '') ne 'completed' && time < $deadline;
    is($st->{json}{status}, 'completed', 'completed');
    is($st->{json}{result_status}, 200, 'result_status');
    is($st->{json}{href_result}, "/jobs/$id/result", 'href_result');
    ok(!exists $st->{headers}{'retry-after'}, 'no Retry-After once finished');
    ok($st->{json}{finished} - $st->{json}{started} >= 1.9, 'ran about 2 s');

    my $res = $ng->get("/jobs/$id/result");
    is($res->{status}, 200, 'upstream status');
    is($res->{headers}{'content-type'}, 'application/x-blob', 'Content-Type');
    ok($res->{body} eq $blob, 'body byte for byte (' . length($blob) . ' bytes)');
    like(join("\n", $ng->log_file('backend.log')), qr{^"POST /slow\?k=v HTTP/1\.[01]" \S+ /blob.bin 200}m,
        'the backend saw the POST');
    is(scalar($ng->crash_lines), 0, 'no alert');
    unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
    $ng->stop;
};

subtest 'long-poll returns right after completion' => sub {
    my $ng = start(blob => 'x');
    my $id = job_id($ng->request('POST', '/quick'));
    my $t0 = time;
    my $st = status_of($ng, $id, '?wait=10');
    my $took = time - $t0;
    is($st->{json}{status}, 'completed', 'completed when it returns');
    ok($took < 1.5, sprintf('returned after %.3f s', $took));
    my $lag = $t0 + $took - $st->{json}{finished};
    ok($lag < 0.3, sprintf('%.1f ms after completion', $lag * 1000));

    # parked long-polls of both workers all wake
    $id = job_id($ng->request('POST', '/quick'));
    my @res = $ng->parallel([ map { { path => "/jobs/$id?wait=10" } } 1 .. 20 ],
        timeout => 5);
    is(scalar(grep { $_->{status} == 200 && $_->{body} =~ /"completed"/ } @res),
        20, 'all 20 long-polls saw completed');
    ok((grep { $_->{time} < 2 } @res) == 20, 'none waited for its timeout');

    # a wait shorter than the job answers with the current state
    $id = job_id($ng->request('POST', '/submit'));
    $t0 = time;
    $st = status_of($ng, $id, '?wait=1');
    ok(time - $t0 >= 0.9 && time - $t0 < 1.8, 'wait=1 waits one second');
    like($st->{json}{status}, qr/^(queued|running)$/, 'still running');
    unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
    $ng->stop;
};

subtest 'DELETE cancels a running job and closes its upstream at once' => sub {
    my $ng = start(blob => 'x');
    my $mark = $ng->root . '/logs/hang.closed';
    unlink $mark;
    my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $hang,
        Listen => 5, ReuseAddr => 1) or die "listen $hang: $!";
    my $pid = fork // die;
    if ($pid == 0) {
        # accept the job's upstream connection, never answer, note its end
        my $c = $srv->accept or exit 1;
        my $buf = '';
        my $deadline = time + 8;
        while (time < $deadline) {
            my $n = sysread $c, my $chunk, 4096;
            last if defined $n && $n == 0;
            $buf .= $chunk if $n;
        }
        open my $fh, '>', $mark or exit 1;
        printf $fh "%.3f\n", time;
        close $fh;
        exit 0;
    }
    close $srv;
    my $id = job_id($ng->request('POST', '/hang'));
    is(AsyncNginx::wait_until(
        sub { (status_of($ng, $id)->{json}{status} // '') eq 'running' }, 5),
        1, 'running');
    my $t0 = time;
    my $del = $ng->request('DELETE', "/jobs/$id");
    is($del->{status}, 202, 'running: 202');
    my $st = status_of($ng, $id);
    is($st->{json}{status}, 'cancelled', 'cancelled');
    is($st->{json}{reason}, 'cancelled', 'reason');
    waitpid $pid, 0;
    open my $fh, '<', $mark;
    my $closed = $fh ? <$fh> : undef;
    ok(defined $closed, 'the upstream connection was closed');
    ok(defined $closed && $closed - $t0 < 0.5,
        sprintf('%.0f ms after the DELETE', (($closed // 0) - $t0) * 1000));
    is($ng->get("/jobs/$id/result")->{status}, 409, 'no result: 409');

    is($ng->request('DELETE', "/jobs/$id")->{status}, 204,
        'DELETE of a finished job: 204');
    is($ng->get("/jobs/$id")->{status}, 404, 'then it is gone');
    unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
    $ng->stop;
};

subtest 'queued jobs: length bound, 503 + Retry-After, cancel while queued' => sub {
    my $ng = start(zone => 'zone=jobs:1m active=1 length=2', blob => 'x',
        workers => 1);
    my @ids = map { job_id($ng->request('POST', '/submit')) } 1 .. 3;
    ok((grep { defined } @ids) == 3, 'one running, two queued');
    my $refused = $ng->request('POST', '/submit');
    is($refused->{status}, 503, 'the fourth is refused');
    like($refused->{headers}{'retry-after'} // '', qr/^\d+$/, 'Retry-After');
    is(status_of($ng, $ids[2])->{json}{status}, 'queued', 'third is queued');
    is($ng->request('DELETE', "/jobs/$ids[2]")->{status}, 204,
        'queued: 204');
    is(status_of($ng, $ids[2])->{json}{status}, 'cancelled', 'cancelled');
    my $ok = $ng->request('POST', '/submit');
    is($ok->{status}, 202, 'its place is free again');
    my $st = $ng->status;
    is($st->{job_zones}{jobs}{queued}, 2, 'status page: 2 queued')
        if $st && $st->{job_zones} && $st->{job_zones}{jobs};
    unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
    $ng->stop;
};

subtest 'callback receives the status JSON; its failure never fails the job' => sub {
    my $extra = <<"EOF";
        location /cb { async_job jobs /internal/quick; async_job_callback /internal/hook; }
        location /cbfail { async_job jobs /internal/quick; async_job_callback /internal/hookfail; }
EOF
    my $ng = start(blob => 'x', extra => $extra);
    my $id = job_id($ng->request('POST', '/cb'));
    my $st = status_of($ng, $id, '?wait=5');
    is($st->{json}{status}, 'completed', 'completed');
    my $hook;
    my $deadline = time + 3;
    while (time < $deadline) {
        ($hook) = grep { m{ POST /hook 200 } } $ng->log_file('backend.log');
        last if $hook;
        sleep 0.05;
    }
    ok($hook, 'the callback was POSTed');
    my ($len) = ($hook // '') =~ /(\d+)$/;
    ok(($len // 0) > 150, 'with a body');

    $id = job_id($ng->request('POST', '/cbfail'));
    $st = status_of($ng, $id, '?wait=5');
    is($st->{json}{status}, 'completed', 'a failing callback leaves it completed');
    ok(AsyncNginx::wait_until(sub { $ng->error_log =~
        /\[warn\].*async_job_callback for job \Q$id\E failed: status 500/ }, 5),
        'the failure is logged');
    unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
    $ng->stop;
};

subtest 'expiry after ttl; a full zone refuses new jobs and keeps the others' => sub {
    my $ng = start(zone => 'zone=jobs:1m ttl=2s', blob => 'x');
    my $id = job_id($ng->request('POST', '/quick'));
    is(status_of($ng, $id, '?wait=5')->{json}{status}, 'completed', 'completed');
    is($ng->get("/jobs/$id/result")->{status}, 200, 'readable within ttl');
    my $st = AsyncNginx::wait_until(sub {
        my $r = $ng->get("/jobs/$id");
        $r->{status} == 404 ? $r : undef;
    }, 6) // {};
    is($st->{status}, 404, 'gone after ttl');
    is($st->{body}, qq({"error":"job not found"}\n), 'same 404 body');
    $ng->stop;

    # 136k zone: 256 job records, the admission queue's fixed table (about
    # 35 KB), room for about one 60k result
    $ng = start(zone => 'zone=jobs:136k active=4 length=10 max_result=100k', blob => 'z' x 60000);
    my $big = job_id($ng->request('POST', '/blobnow'));
    my $big2 = job_id($ng->request('POST', '/blobnow'));
    my $s1 = status_of($ng, $big, '?wait=5')->{json};
    my $s2 = status_of($ng, $big2, '?wait=5')->{json};
    # the two run at once, in either worker: whichever ends first fits
    ($big, $s1, $s2) = ($big2, $s2, $s1) if $s1->{status} ne 'completed';
    is($s1->{status}, 'completed', 'the first result to end fits');
    is($s2->{status}, 'failed', 'the second does not');
    is($s2->{reason}, 'zone_full', 'reason zone_full');
    my $running = job_id($ng->request('POST', '/submit'));
    my @status;
    for (1 .. 300) {
        push @status, $ng->request('POST', '/instant')->{status};
    }
    ok((grep { $_ == 503 } @status) > 0, 'a full job table answers 503');
    ok((grep { $_ != 503 && $_ != 202 } @status) == 0,
        'nothing but 202 and 503');
    my $r = status_of($ng, $running)->{json};
    like($r->{status}, qr/^(queued|running)$/, 'the unfinished job stays');
    is($ng->get("/jobs/$big/result")->{body}, 'z' x 60000,
        'the stored result stays');
    unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
    is(scalar($ng->crash_lines), 0, 'no alert');
    $ng->stop;
};

done_testing;
