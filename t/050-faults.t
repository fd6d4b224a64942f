# Faults: workers killed under load, reloads every 200 ms under load,
# backends that misbehave, clients that leave at every stage, and a soak of
# mixed queued, fanned-out and job traffic. Nothing may crash, leak a queue
# slot, leave a job unfinished, or answer 5xx beyond what the limits give.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use AsyncNginx;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my %bad = (reset => $port + 1, garbage => $port + 2, half => $port + 3,
           silent => $port + 4);

sub http_conf {
    my ($active) = @_;
    $active //= 4;
    return <<"EOF";
    async_queue_zone zone=q:1m active=$active length=200 timeout=20s;
    async_queue_zone zone=calls:1m active=6 length=200 timeout=20s;
    async_job_zone zone=jobs:8m active=4 length=500 ttl=1m;
    proxy_connect_timeout 1s;
    proxy_read_timeout 1s;
    server {
        listen 127.0.0.1:\$PORT reuseport;
        location = /status { async_status; }
        location /q { async_queue q; echo_sleep 0.1; echo q; }
        location /f {
            async_queue q;
            async_timeout 3s;
            async_fetch a /call/a timeout=2s;
            async_fetch b /call/b timeout=2s optional;
            async_fetch c /call/c timeout=2s optional;
        }
        location /call/ { async_queue calls; echo_sleep 0.05; echo "call"; }
        location /job { async_job jobs /jobwork; }
        location /jobwork { internal; echo_sleep 0.1; echo "job done"; }
        location /jobs/ { async_job_status jobs; }
        location /bad/reset { proxy_pass http://127.0.0.1:$bad{reset}; }
        location /bad/garbage { proxy_pass http://127.0.0.1:$bad{garbage}; }
        location /bad/half { proxy_pass http://127.0.0.1:$bad{half}; }
        location /bad/silent { proxy_pass http://127.0.0.1:$bad{silent}; }
        location /fbad {
            async_fetch reset /bad/reset optional;
            async_fetch garbage /bad/garbage optional;
            async_fetch half /bad/half optional;
            async_fetch silent /bad/silent optional;
            async_fetch ok /call/ok;
        }
    }
EOF
}

# Misbehaving backends, each a forked accept loop bounded in time.
my @children;
sub backend {
    my ($port, $act) = @_;
    my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
        Listen => 64, ReuseAddr => 1) or die "listen $port: $!";
    my $pid = fork // die;
    if ($pid == 0) {
        my $deadline = time + 120;
        my @held;
        while (time < $deadline) {
            my $c = $srv->accept or next;
            my $req = '';
            $c->recv($req, 4096);
            $act->($c, \@held);
        }
        POSIX::_exit(0);
    }
    close $srv;
    push @children, $pid;
}
backend($bad{reset}, sub { my ($c) = @_; setsockopt($c, 1, 13, pack('ii', 1, 0)); close $c });
backend($bad{garbage}, sub { my ($c) = @_; print $c "garbage\r\n\r\nmore garbage"; close $c });
backend($bad{half}, sub { my ($c) = @_;
    print $c "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"; close $c });
backend($bad{silent}, sub { my ($c, $held) = @_; push @$held, $c });
END { kill 'KILL', @children if @children; }

my $ng = AsyncNginx->new(name => 'faults-suite', workers => 2, http => http_conf());
$ng->start;

sub assert_idle {
    my ($title) = @_;
    for my $zone (qw(q calls)) {
        my $z = $ng->wait_zone_idle($zone, 10);
        ok($z && $z->{active} == 0 && $z->{waiting} == 0,
            "$title: zone $zone idle") or diag explain $z;
    }
    my $jobs;
    my $deadline = time + 15;
    while (time < $deadline) {
        $jobs = ($ng->status // {})->{job_zones}{jobs};
        last if $jobs && $jobs->{queued} + $jobs->{running} == 0;
        sleep 0.1;
    }
    ok($jobs && $jobs->{queued} + $jobs->{running} == 0,
        "$title: no job left queued or running") or diag explain $jobs;
}

# Job ids of 202 answers, polled until each is final.
sub jobs_finish {
    my ($title, @res) = @_;
    my @ids = map { $_->{body} =~ /"id":"([A-Za-z0-9_-]{22})"/ ? $1 : () }
        grep { $_->{status} == 202 } @res;
    my %final;
    for my $id (@ids) {
        my $r = $ng->get("/jobs/$id?wait=10", timeout => 15);
        $final{$1}++ if $r->{body} =~ /"status":"(\w+)"/;
    }
    return \%final;
}

sub no_crash {
    my ($title) = @_;
    my @crash = grep { !/exited on signal 9/ } $ng->crash_lines;
    is(scalar @crash, 0, "$title: no crash or alert") or diag join "\n", @crash;
}

# Queued requests, fan-outs and job submissions, in turn.
sub mixed_load {
    my ($n) = @_;
    return [ map {
        $_ % 3 == 0 ? { method => 'POST', path => "/job?i=$_", body => "x$_" }
        : $_ % 3 == 1 ? { path => "/q?i=$_" } : { path => "/f?i=$_" }
    } 1 .. $n ];
}

sub expected_status {
    my ($r) = @_;
    return $r->{status} == 200 || $r->{status} == 202;
}

subtest 'SIGKILL of a worker under load, three times' => sub {
    for my $round (1 .. 3) {
        my @workers = $ng->wait_workers(2, 5);
        my $pid = fork // die;
        if ($pid == 0) {
            sleep 0.3;
            kill 'KILL', $workers[$round % 2];
            POSIX::_exit(0);
        }
        my @res = $ng->parallel(mixed_load(30), gap => 0.01, timeout => 20);
        waitpid $pid, 0;
        my @bad = grep { !expected_status($_) && $_->{status} != 0 } @res;
        is(scalar @bad, 0, "round $round: only the killed worker's clients lost")
            or diag explain [map { $_->{status} } @res];
        is(scalar($ng->wait_workers(2, 5)), 2, "round $round: worker respawned");
        assert_idle("round $round");
    }
    my @after = $ng->parallel([ map { { path => "/q?after=$_" } } 1 .. 4 ],
        timeout => 5);
    is(scalar(grep { $_->{status} == 200 && $_->{time} < 0.5 } @after), 4,
        'all four slots usable again') or diag explain \@after;
};

subtest 'reload every 200 ms under load' => sub {
    my $stop_at = time + 3;
    my $pid = fork // die;
    if ($pid == 0) {
        my $i = 0;
        while (time < $stop_at) {
            $ng->reload(http => http_conf(3 + $i++ % 3));
            sleep 0.2;
        }
        POSIX::_exit(0);
    }
    my (@all, $rounds);
    while (time < $stop_at + 0.5 && $rounds++ < 100) {
        push @all, $ng->parallel(mixed_load(10), gap => 0.005, timeout => 20);
    }
    waitpid $pid, 0;
    ok(@all >= 20, scalar(@all) . ' requests during the reloads');
    my @bad = grep { !expected_status($_) } @all;
    is(scalar @bad, 0, 'every request answered 200/202 across the reloads')
        or diag explain [map { $_->{status} } @bad];
    my $final = jobs_finish('reloads', @all);
    ok(($final->{completed} // 0) > 0, 'jobs submitted across the reloads complete');
    is(scalar(grep { $_ ne 'completed' } keys %$final), 0,
        'and none ends otherwise') or diag explain $final;
    no_crash('reloads');
    assert_idle('reloads');
};

subtest 'misbehaving backends behind a fan-out' => sub {
    my $r = $ng->get('/fbad', timeout => 10);
    is($r->{status}, 200, 'the required call answers, the broken ones fail');
    is($r->{headers}{'x-async-completed'}, 'false', 'marked incomplete');
    my $failed = $r->{headers}{'x-async-failed'} // '';
    like($failed, qr/reset=502/, 'reset connection is a 502');
    like($failed, qr/garbage=502/, 'garbage is a 502');
    like($failed, qr/half=/, 'a half body fails the call');
    like($failed, qr/silent=504/, 'a silent backend times out');
    for my $path (qw(/bad/reset /bad/garbage /bad/half /bad/silent)) {
        my $d = $ng->get($path, timeout => 5);
        ok(!$d->{timed_out}, "$path alone gets an answer or a close");
    }
    no_crash('backends');
};

subtest 'clients leaving at every stage' => sub {
    # a job that runs long enough to be long-polled
    my $job = $ng->request('POST', '/job?poll=1', body => 'p');
    my ($id) = $job->{body} =~ /"id":"([A-Za-z0-9_-]{22})"/;
    ok($id, 'a job to long-poll');
    my @res = $ng->parallel([
        (map { { path => "/q?leave=$_", close_after => 0.05 * $_ } } 1 .. 10),
        (map { { path => "/f?leave=$_", close_after => 0.02 * $_ } } 1 .. 10),
        (map { { method => 'POST', path => "/job?leave=$_", body => 'b',
                 close_after => 0.001 * $_ } } 1 .. 5),
        (map { { path => "/jobs/$id?wait=5", close_after => 0.01 * $_ } } 1 .. 5),
        { path => '/fbad?leave=1', close_after => 0.3 },
    ], timeout => 5);
    ok(scalar(grep { $_->{aborted} } @res) >= 5, 'clients left early');
    assert_idle('leaving');
    no_crash('leaving');
};

subtest 'soak: mixed load, flat memory, counters back to zero' => sub {
    my $secs = $ENV{ASYNC_SOAK_SECONDS} || 40;
    my $warm = time + 5;
    my $deadline = time + $secs;
    my ($rss_start, @statuses, @soak_jobs, $n);
    while (time < $deadline && $n++ < 100000) {
        my @res = $ng->parallel(
            [ @{ mixed_load(16) }, { path => '/f?soak', close_after => 0.03 } ],
            timeout => 20);
        push @statuses, map { $_->{status} } @res;
        push @soak_jobs, map { $_->{body} =~ /"id":"([A-Za-z0-9_-]{22})"/ ? $1 : () }
            grep { $_->{status} == 202 } @res;
        if (!$rss_start && time > $warm) {
            $rss_start = worker_rss();
        }
    }
    my $rss_end = worker_rss();
    my %count;
    $count{$_}++ for @statuses;
    ok(($count{200} // 0) > 200, "served $count{200} requests");
    ok(($count{202} // 0) > 50, "accepted $count{202} jobs");
    is(scalar(grep { $_ != 200 && $_ != 202 && $_ != 0 } @statuses), 0,
        'no error status') or diag explain \%count;
    my $growth = $rss_end - $rss_start;
    SKIP: {
        skip 'RSS is not meaningful under a sanitizer or valgrind', 1
            if AsyncNginx::slow();
        ok($growth < 2048,
            "worker RSS grew by $growth KB after warm-up (bound 2 MB)");
    }
    assert_idle('soak');
    my %states;
    for my $id (@soak_jobs[-20 .. -1]) {
        my $r = $ng->get("/jobs/$id");
        $states{$1}++ if $r->{body} =~ /"status":"(\w+)"/;
    }
    is_deeply(\%states, { completed => 20 }, 'the last 20 jobs completed');
    no_crash('soak');
};

sub worker_rss {
    my $kb = 0;
    for my $pid ($ng->worker_pids) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) { $kb += $1 if /^VmRSS:\s+(\d+)/ }
    }
    return $kb;
}

$ng->stop;
done_testing;
