# The admission queue under real concurrency: two workers, many clients.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use AsyncNginx;

sub queue_http {
    my (%o) = @_;
    my $zone = $o{zone} // 'zone=q:1m active=1 length=100 timeout=10s';
    my $extra = $o{extra} // '';
    my $sleep = $o{sleep} // '0.05';
    return <<"EOF";
    async_queue_zone $zone;
    log_format queue '\$arg_i \$msec \$pid \$status \$async_queue_status \$async_queue_time';
    server {
        listen 127.0.0.1:\$PORT reuseport;
        location = /status { async_status; }
        location /slow {
            access_log logs/queue.log queue;
            async_queue q;
            $extra
            echo_sleep $sleep;
            echo "i=\$arg_i";
        }
    }
EOF
}

sub counters_add_up {
    my ($z, $sent, $title) = @_;
    is($z->{passed} + $z->{queued} + $z->{rejected} + $z->{timed_out}
        + $z->{cancelled}, $sent, "$title: every request counted once");
    is($z->{active}, 0, "$title: no slot held afterwards");
    is($z->{waiting}, 0, "$title: nobody waits afterwards");
}

# Under valgrind a cold worker takes ~0.1 s to take its first request, more
# than the 20 ms between arrivals: space them (and the service) wider.
my ($fifo_gap, $fifo_sleep) = AsyncNginx::slow() ? (0.25, '0.5') : (0.02, '0.05');
my $ng = AsyncNginx->new(name => 'queue', workers => 2,
    http => queue_http(sleep => $fifo_sleep));

subtest 'admission is FIFO across workers' => sub {
    $ng->start;
    my @res = $ng->parallel([ map { { path => "/slow?i=$_" } } 1 .. 20 ],
        gap => $fifo_gap, timeout => 30);
    is(scalar(grep { $_->{status} == 200 } @res), 20, 'all 20 served');
    my @log = map { [split ' '] } $ng->log_file('queue.log');
    my @by_finish = map { $_->[0] } sort { $a->[1] <=> $b->[1] } @log;
    is_deeply(\@by_finish, [1 .. 20], 'served in arrival order');
    my %pids = map { $_->[2] => 1 } @log;
    is(scalar(keys %pids), 2, 'both workers took part');
    my %st;
    $st{ $_->[4] }++ for @log;
    is($st{PASSED}, 1, 'first request passed at once');
    is($st{QUEUED}, 19, 'the others waited their turn');
    my $z = $ng->wait_zone_idle('q');
    is($z->{queued}, 19, 'status counts the queued');
    counters_add_up($z, 20, 'fifo');
    is(scalar($ng->crash_lines), 0, 'no alert or crash')
        or diag join "\n", $ng->crash_lines;
    $ng->stop;
};

subtest 'beyond length: fast 503 with Retry-After' => sub {
    $ng = AsyncNginx->new(name => 'queue', workers => 2, http => queue_http(
        zone => 'zone=q:1m active=1 length=2 timeout=10s', sleep => '0.5'));
    $ng->start;
    my @res = $ng->parallel([ map { { path => "/slow?i=$_" } } 1 .. 6 ],
        gap => 0.03, timeout => 10);
    my @ok = grep { $_->{status} == 200 } @res;
    my @rej = grep { $_->{status} == 503 } @res;
    is(scalar @ok, 3, 'one in service plus two queued are served');
    is(scalar @rej, 3, 'the rest are rejected');
    for my $r (@rej) {
        ok($r->{time} < 0.4, 'rejection is immediate')
            or diag "took $r->{time}s";
        like($r->{headers}{'retry-after'} // '', qr/^\d+$/,
            'Retry-After is present');
        ok($r->{headers}{'retry-after'} >= 1
            && $r->{headers}{'retry-after'} <= 60, 'auto Retry-After in 1..60');
    }
    my $z = $ng->wait_zone_idle('q');
    is($z->{rejected}, 3, 'status counts the rejections');
    counters_add_up($z, 6, 'length');
    $ng->stop;
};

subtest 'parked longer than timeout: 503 TIMEOUT with fixed Retry-After' => sub {
    $ng = AsyncNginx->new(name => 'queue', workers => 2, http => queue_http(
        zone => 'zone=q:1m active=1 length=10 timeout=300ms', sleep => '1',
        extra => 'async_queue_retry_after 7s;'));
    $ng->start;
    my @res = $ng->parallel([ map { { path => "/slow?i=$_" } } 1 .. 3 ],
        gap => 0.03, timeout => 10);
    is($res[0]{status}, 200, 'the first is served');
    for my $r (@res[1, 2]) {
        is($r->{status}, 503, 'the waiters time out');
        ok($r->{time} >= 0.25 && $r->{time} < 0.9,
            'after about the queue timeout') or diag "took $r->{time}s";
        is($r->{headers}{'retry-after'}, '7', 'fixed Retry-After');
    }
    my @log = map { [split ' '] } $ng->log_file('queue.log');
    is(scalar(grep { $_->[4] eq 'TIMEOUT' } @log), 2,
        '$async_queue_status is TIMEOUT');
    my ($t) = map { $_->[5] } grep { $_->[4] eq 'TIMEOUT' } @log;
    like($t, qr/^0\.[2-9]\d\d$/, '$async_queue_time is the time parked');
    my $z = $ng->wait_zone_idle('q');
    is($z->{timed_out}, 2, 'status counts the timeouts');
    counters_add_up($z, 3, 'timeout');
    $ng->stop;
};

subtest 'a queue timeout answers the configured async_queue_status' => sub {
    $ng = AsyncNginx->new(name => 'queue', workers => 1, http => queue_http(
        zone => 'zone=q:1m active=1 length=10 timeout=200ms', sleep => '1',
        extra => 'async_queue_status 429;'));
    $ng->start;
    my @res = $ng->parallel([ map { { path => "/slow?i=$_" } } 1 .. 2 ],
        gap => 0.05, timeout => 10);
    is($res[0]{status}, 200, 'the first is served');
    is($res[1]{status}, 429, 'the waiter times out with 429, not 503');
    my @log = map { [split ' '] } $ng->log_file('queue.log');
    is(scalar(grep { $_->[3] eq '429' && $_->[4] eq 'TIMEOUT' } @log), 1,
        'logged as 429 TIMEOUT');
    $ng->stop;
};

subtest 'per_cpu=N: N slots per CPU' => sub {
    chomp(my $ncpu = `getconf _NPROCESSORS_ONLN`);
    $ng = AsyncNginx->new(name => 'queue', workers => 1, http => queue_http(
        zone => 'zone=q:1m per_cpu=3 length=10', sleep => '1'));
    $ng->start;
    my $z = $ng->wait_zone_idle('q');
    is($z->{max_active}, 3 * $ncpu, "3 x $ncpu CPUs");
    # and the limit is what admits: 3 x CPUs run at once, one more waits
    my $n = 3 * $ncpu;
    my @res = $ng->parallel([ map { { path => "/slow?i=$_" } } 1 .. $n + 1 ],
        timeout => 10);
    is(scalar(grep { $_->{status} == 200 } @res), $n + 1, 'all served');
    my @log = map { [split ' '] } $ng->log_file('queue.log');
    is(scalar(grep { $_->[4] eq 'PASSED' } @log), $n,
        "$n passed at once");
    is(scalar(grep { $_->[4] eq 'QUEUED' } @log), 1, 'one was queued');
    $ng->stop;
};

subtest 'custom status, Retry-After off' => sub {
    $ng = AsyncNginx->new(name => 'queue', workers => 1, http => queue_http(
        zone => 'zone=q:1m active=1 length=0', sleep => '0.5',
        extra => 'async_queue_status 429; async_queue_retry_after off;'));
    $ng->start;
    my @res = $ng->parallel([ map { { path => "/slow?i=$_" } } 1 .. 2 ],
        gap => 0.05, timeout => 5);
    is($res[0]{status}, 200, 'first served');
    is($res[1]{status}, 429, 'length=0 rejects at once with the set status');
    ok(!exists $res[1]{headers}{'retry-after'}, 'no Retry-After');
    $ng->stop;
};

subtest 'client leaving while parked is cancelled at once' => sub {
    $ng = AsyncNginx->new(name => 'queue', workers => 2, http => queue_http(
        zone => 'zone=q:1m active=1 length=10 timeout=10s', sleep => '3'));
    $ng->start;
    my @res = $ng->parallel([
        { path => '/slow?i=1' },
        { path => '/slow?i=2', close_after => 0.2 },
        { path => '/slow?i=3', close_after => 0.2 },
    ], gap => 0.03, timeout => 1);
    ok($res[1]{aborted} && $res[2]{aborted}, 'two clients left');
    # the first runs 3 s: the cancellations are seen long before it ends
    my $z = AsyncNginx::wait_until(sub {
        my $q = ($ng->status // {})->{queue_zones}{q};
        $q && $q->{cancelled} == 2 ? $q : undef;
    }, 2) // {};
    is($z->{waiting}, 0, 'they left the queue while the first still runs');
    is($z->{active}, 1, 'the first still holds its slot');
    is($z->{cancelled}, 2, 'counted as cancelled');
    $z = $ng->wait_zone_idle('q', 5);
    counters_add_up($z, 3, 'cancel');
    my @after = $ng->parallel([ { path => '/slow?i=4' } ], timeout => 5);
    is($after[0]{status}, 200, 'the queue still works');
    $ng->stop;
};

done_testing;
