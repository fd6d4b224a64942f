# store=redis: two nginx nodes share their jobs through one redis-server
# that the suite starts itself (loopback, no persistence, a temp dir).
# A job submitted on node A is answered on node B: status, long-poll woken
# through pub/sub, result, DELETE (which stops the run on A). The owner's
# lease: A's whole nginx killed with SIGKILL mid-job makes the job
# failed/owner_lost on B. Redis stalled (SIGSTOP) or restarted: job
# locations answer 503 + Retry-After within redis_timeout, other locations
# go on, one [error] per outage, and a job accepted before the outage ends
# once Redis is back. Results outlive a restart of both nodes.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use AsyncNginx;
use RedisServer;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my ($port_a, $port_b, $backend, $redis_port) =
    ($port, $port + 1, $port + 2, $port + 5);

plan skip_all => 'redis-server is not installed'
    unless RedisServer::installed();

my $tmp = tempdir(CLEANUP => 1);
# lease expiries wake long-polls (docs/cluster.md)
my $redis = RedisServer->new(port => $redis_port, dir => $tmp,
    args => [ '--notify-keyspace-events', 'Ex' ]);
END { $redis->stop if $redis }

sub http_conf {
    my ($with_backend) = @_;
    my $b = $with_backend ? <<"EOF" : '';
    server {
        listen 127.0.0.1:$backend;
        location /work { echo_sleep \$arg_s; echo "slept \$arg_s"; }
    }
EOF
    return <<"EOF";
    async_job_zone zone=jobs:1m ttl=1h store=redis
                   redis=127.0.0.1:$redis_port redis_timeout=500ms;
$b
    server {
        listen 127.0.0.1:\$PORT;
        location /submit { async_job jobs /internal/work; }
        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:$backend/;
        }
        location /jobs/ { async_job_status jobs; }
        location /plain { return 200 "plain\\n"; }
        location /status { async_status; }
    }
EOF
}

sub node {
    my ($name, $p, $with_backend) = @_;
    my $ng = AsyncNginx->new(name => "redis-$name", workers => 1,
        http => http_conf($with_backend));
    $ng->{port} = $p;
    return $ng;
}

sub json_of {
    my ($r) = @_;
    return eval { decode_json($r->{body}) } // {};
}

# the first job location answer after start: 503 until connected
sub ready { return RedisServer::node_ready($_[0]) }

sub submit {
    my ($ng, $secs) = @_;
    my $r = $ng->request('POST', "/submit?s=$secs");
    return ($r, json_of($r)->{id});
}

sub error_lines {
    my ($ng, $re) = @_;
    open my $fh, '<', $ng->root . '/logs/error.log' or return 0;
    return scalar grep { /\[error\]/ && /$re/ } <$fh>;
}

# No [alert] or [crit], and no [error] but the outage lines.
sub log_clean {
    my ($ng, $name) = @_;
    open my $fh, '<', $ng->root . '/logs/error.log' or return fail("$name log");
    my @bad = grep { /\[(alert|crit|emerg)\]/
        || (/\[error\]/ && !/redis .* unavailable/) } <$fh>;
    is(scalar @bad, 0, "$name: no unexpected [error], [alert] or [crit]")
        or diag @bad;
}

$redis->start;
my $a = node('a', $port_a, 1);
my $b = node('b', $port_b, 0);
$a->start;
$b->start;
ok(ready($a) && ready($b), 'both nodes connected to Redis');

subtest 'submit on A; status, long-poll wake, result and DELETE on B' => sub {
    my ($r, $id) = submit($a, 1);
    is($r->{status}, 202, 'A accepts the job') or return;
    like($r->{headers}{location}, qr{^/jobs/\Q$id\E$}, 'Location on A');

    my $s = $b->get("/jobs/$id");
    is($s->{status}, 200, 'B knows the job at once');
    my $j = json_of($s);
    like($j->{status}, qr/^(queued|running)$/, 'B: queued or running');
    is_deeply([sort keys %$j],
        [sort qw(id status created started finished result_status
            href_result reason)], 'the status JSON has the shm shape');
    is($s->{headers}{'retry-after'}, '1', 'Retry-After while unfinished');

    my $t0 = time;
    my $w = $b->get("/jobs/$id?wait=20", timeout => 30);
    my $waited = time - $t0;
    is(json_of($w)->{status}, 'completed', 'the long-poll on B is woken');
    cmp_ok($waited, '<', 10, 'by the end of the job, not the wait');
    is(json_of($w)->{href_result}, "/jobs/$id/result", 'href_result');
    is_deeply(json_of($w), json_of($b->get("/jobs/$id")),
        'the woken answer (from the end message) is what a read answers');

    my $res = $b->get("/jobs/$id/result");
    is($res->{status}, 200, 'B replays the result');
    is($res->{body}, "slept 1\n", 'the body of the result');

    is($b->request('DELETE', "/jobs/$id")->{status}, 204,
        'DELETE of a finished job on B');
    is($a->get("/jobs/$id")->{status}, 404, 'gone on A too');
    is($b->request('DELETE', "/jobs/$id/result")->{status}, 405,
        'DELETE of /result: 405');
};

subtest 'DELETE on B cancels the run on A' => sub {
    my ($r, $id) = submit($a, 30);
    is($r->{status}, 202, 'accepted on A') or return;
    AsyncNginx::wait_until(sub {
        (json_of($b->get("/jobs/$id"))->{status} // "") eq 'running'
    }, 5);
    my $d = $b->request('DELETE', "/jobs/$id");
    is($d->{status}, 202, 'DELETE of a running job: 202');
    is(json_of($d)->{status}, 'cancelled', 'cancelled');
    # A's own table (the async_status counters) shows the run stopped
    my $stopped = AsyncNginx::wait_until(sub {
        my $st = json_of($a->get('/status'));
        ($st->{job_zones}{jobs}{cancelled} // 0) >= 1
            && ($st->{job_zones}{jobs}{running} // 1) == 0
    }, 5);
    ok($stopped, 'the run on A is stopped');
    is(json_of($a->get("/jobs/$id"))->{status}, 'cancelled', 'A agrees');
};

subtest 'the status page shows the store' => sub {
    my $st = json_of($b->get('/status'));
    my $z = $st->{job_zones}{jobs} // {};
    is($z->{store}, 'redis', 'store');
    is($z->{redis}{state}, 'up', 'connection state');
    cmp_ok($z->{redis}{commands} // 0, '>', 0, 'commands counted');
    my $p = $b->get('/status', headers => { Accept => 'text/plain' });
    like($p->{body},
        qr/nginx_async_job_redis_command_seconds_bucket\{zone="jobs",le="\+Inf"\} \d+/,
        'latency histogram in Prometheus form');
    like($p->{body}, qr/nginx_async_job_redis_up\{zone="jobs"\} 1/, 'up gauge');
};

subtest 'Redis stalled (SIGSTOP) for 4 s: 503 within redis_timeout, one [error], the job completes' => sub {
    my ($r, $id) = submit($a, 2);
    is($r->{status}, 202, 'a job accepted before the stall') or return;
    kill 'STOP', $redis->pid;
    my $t0 = time;
    my $s = $b->get("/jobs/$id");
    my $took = time - $t0;
    is($s->{status}, 503, 'status on B: 503');
    is($s->{headers}{'retry-after'}, '1', 'with Retry-After');
    cmp_ok($took, '<', 3, 'answered within about redis_timeout');
    my $p = $b->get('/plain');
    is($p->{status}, 200, 'other locations go on');
    for (1 .. 5) { $b->get("/jobs/$id") }
    is($b->request('POST', '/submit?s=1')->{status}, 503,
        'a submit on B: 503');
    # longer than the lease (3 s): the owner's writes win over owner_lost
    sleep 4;
    kill 'CONT', $redis->pid;
    ok(ready($b), 'B is back after SIGCONT');
    is(error_lines($b, qr/redis .* unavailable/), 1,
        'one [error] for the outage on B');
    my $done = AsyncNginx::wait_until(sub {
        (json_of($b->get("/jobs/$id"))->{status} // "") eq 'completed'
    }, 10);
    ok($done, 'the job accepted before the stall completes');
    is($b->get("/jobs/$id/result")->{body}, "slept 2\n", 'with its result');
};

subtest 'Redis restarted mid-job: the job completes once it is back' => sub {
    my ($r, $id) = submit($a, 2);
    is($r->{status}, 202, 'accepted') or return;
    $redis->stop;
    is($b->get("/jobs/$id")->{status}, 503, '503 while Redis is down');
    $redis->start;
    ok(ready($a) && ready($b), 'both reconnect by themselves');
    my $done = AsyncNginx::wait_until(sub {
        (json_of($b->get("/jobs/$id"))->{status} // "") eq 'completed'
    }, 10);
    ok($done, 'completed: written again by its owner');
};

subtest 'results outlive a restart of both nodes' => sub {
    my ($r, $id) = submit($a, 0);
    is($r->{status}, 202, 'accepted') or return;
    AsyncNginx::wait_until(sub {
        (json_of($b->get("/jobs/$id"))->{status} // "") eq 'completed'
    }, 5);
    log_clean($a, 'A');
    log_clean($b, 'B');
    $a->stop;
    $b->stop;
    $a->start;
    $b->start;
    ok(ready($a) && ready($b), 'restarted');
    is($b->get("/jobs/$id/result")->{body}, "slept 0\n", 'result on B');
    is($a->get("/jobs/$id/result")->{body}, "slept 0\n", 'result on A');
};

subtest 'reload of A mid-job: the job ends in the old worker, B sees it' => sub {
    # longer than the lease: the exiting worker keeps renewing it
    my ($r, $id) = submit($a, 5);
    is($r->{status}, 202, 'accepted') or return;
    my @new = $a->reload;
    ok(scalar @new, 'A reloaded');
    ok(ready($a), 'the new worker connects');
    my $done = AsyncNginx::wait_until(sub {
        (json_of($b->get("/jobs/$id"))->{status} // '') eq 'completed'
    }, 10);
    ok($done, 'completed');
    is($b->get("/jobs/$id/result")->{body}, "slept 5\n", 'its result on B');
    ok($a->wait_retired(10), 'the old worker exits');
    log_clean($a, 'A after the reload');
};

subtest 'SIGKILL of A mid-job: failed/owner_lost on B' => sub {
    my ($r, $id) = submit($a, 30);
    is($r->{status}, 202, 'accepted') or return;
    AsyncNginx::wait_until(sub {
        (json_of($b->get("/jobs/$id"))->{status} // "") eq 'running'
    }, 5);
    # a long-poll parked on B before A goes
    my $poll = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $port_b) or die "connect: $!";
    print $poll "GET /jobs/$id?wait=60 HTTP/1.0\r\nHost: b\r\n\r\n";
    sleep 0.3;
    my @pids = ($a->{pid}, $a->worker_pids);
    kill 'KILL', @pids;
    $a->{pid} = undef;
    my $t0 = time;
    my $answer = '';
    my $rin = '';
    vec($rin, fileno($poll), 1) = 1;
    while (time - $t0 < 20) {
        next unless select(my $r = $rin, undef, undef, 1) > 0;
        my $n = sysread($poll, my $buf, 4096);
        last if defined $n && $n == 0;
        $answer .= $buf if $n;
    }
    my $woken = time - $t0;
    note(sprintf 'long-poll answered %.1f s after the SIGKILL', $woken);
    like($answer, qr/"status":"failed".*"reason":"owner_lost"/s,
        'the parked long-poll is answered failed/owner_lost');
    cmp_ok($woken, '<', 10, 'at the lease\'s expiry, not the end of its wait');
    $t0 = time;
    my $lost = AsyncNginx::wait_until(sub {
        my $j = json_of($b->get("/jobs/$id"));
        ($j->{status} // '') eq 'failed' && ($j->{reason} // '') eq 'owner_lost'
    }, 10, 0.2);
    ok($lost, 'failed/owner_lost');
    cmp_ok(time - $t0, '<', 3, 'status reads agree at once');
};

log_clean($b, 'B');
$b->stop;
done_testing;
