# Priority classes of the admission queue: admission by class across
# workers, eviction of the newest of the lowest class, fast answers on a
# connection that stays open, per-class counters, invalid values.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use AsyncNginx;
use QueueClient qw(read_response send_get);

sub priority_http {
    my (%o) = @_;
    my $zone = $o{zone} // 'zone=q:1m active=1 length=100 timeout=20s';
    my $hold = $o{hold} // '1';
    return <<"EOF";
    async_queue_zone $zone;
    log_format queue '\$arg_i \$msec \$pid \$status \$async_queue_status \$arg_p';
    server {
        listen 127.0.0.1:\$PORT reuseport;
        location = /status { async_status; }
        location /hold {
            access_log logs/queue.log queue;
            async_queue q priority=\$arg_p;
            echo_sleep $hold;
            echo "i=\$arg_i";
        }
        location /slow {
            access_log logs/queue.log queue;
            async_queue q priority=\$arg_p;
            echo_sleep 0.05;
            echo "i=\$arg_i";
        }
        location = /plain { return 200 "plain\\n"; }
    }
EOF
}

my $ng;

subtest 'admitted by class, highest first, FIFO within a class, across workers' => sub {
    $ng = AsyncNginx->new(name => 'queue-priority', workers => 2,
        http => priority_http());
    $ng->start;
    my @classes = (0, 7, 3, 0, 7, 3, 0, 7, 3, 0, 7, 3);
    my @reqs = ({ path => '/hold?i=0&p=0' },
        map { { path => "/slow?i=" . ($_ + 1) . "&p=$classes[$_]" } }
            0 .. $#classes);
    my @res = $ng->parallel(\@reqs, gap => 0.02, timeout => 30);
    is(scalar(grep { $_->{status} == 200 } @res), 13, 'all served');
    my @log = map { [split ' '] } $ng->log_file('queue.log');
    my @order = map { $_->[0] } sort { $a->[1] <=> $b->[1] } @log;
    my @want = (0,
        (grep { $classes[$_ - 1] == 7 } 1 .. 12),
        (grep { $classes[$_ - 1] == 3 } 1 .. 12),
        (grep { $classes[$_ - 1] == 0 } 1 .. 12));
    is_deeply(\@order, \@want, 'class 7, then 3, then 0, each in arrival order');
    my %pids = map { $_->[2] => 1 } @log;
    is(scalar(keys %pids), 2, 'both workers took part');

    my $z = $ng->wait_zone_idle('q');
    is($z->{priorities}{7}{queued}, 4, 'per-class counter: class 7 queued');
    is($z->{priorities}{3}{queued}, 4, 'per-class counter: class 3 queued');
    is($z->{priorities}{0}{queued} + $z->{priorities}{0}{passed}, 5,
        'per-class counter: class 0');
    is($z->{priorities}{7}{wait_seconds}{count}, 4,
        'per-class wait histogram');
    ok(!exists $z->{priorities}{5}, 'classes without traffic are left out');

    my $p = $ng->get('/status?format=prometheus');
    like($p->{body},
        qr/^nginx_async_queue_class_requests_total\{zone="q",priority="7",outcome="queued"\} 4$/m,
        'Prometheus: counter with label priority');
    like($p->{body},
        qr/^nginx_async_queue_class_wait_seconds_count\{zone="q",priority="3"\} 4$/m,
        'Prometheus: wait histogram with label priority');
    is(scalar($ng->crash_lines), 0, 'no alert or crash');
    $ng->stop;
};

subtest 'a full queue evicts the newest waiter of the lowest class' => sub {
    $ng = AsyncNginx->new(name => 'queue-priority', workers => 2,
        http => priority_http(zone => 'zone=q:1m active=1 length=3 timeout=20s'));
    $ng->start;
    my @res = $ng->parallel([
        { path => '/hold?i=0&p=1' },  # holds the slot
        { path => '/slow?i=1&p=2' },
        { path => '/slow?i=2&p=0' },
        { path => '/slow?i=3&p=0' },  # newest of the lowest class
        { path => '/slow?i=4&p=5' },  # queue full: evicts i=3
        { path => '/slow?i=5&p=0' },  # full, nothing below 0: rejected
        { path => '/slow?i=6&p=2' },  # evicts i=2, the lowest class left
    ], gap => 0.03, timeout => 20);
    is_deeply([ map { $_->{status} } @res ], [200, 200, 503, 503, 200, 503, 200],
        'the two newest of class 0 evicted, the class-0 arrival rejected');
    for my $i (2, 3, 5) {
        ok(defined $res[$i]{time} && $res[$i]{time} < 0.5,
            "request $i answered at once") or diag "took $res[$i]{time}s";
        like($res[$i]{headers}{'retry-after'} // '', qr/^\d+$/,
            "request $i has Retry-After");
    }
    my @log = map { [split ' '] } $ng->log_file('queue.log');
    my %st = map { $_->[0] => $_->[4] } @log;
    is($st{3}, 'EVICTED', 'i=3: $async_queue_status EVICTED');
    is($st{2}, 'EVICTED', 'i=2: $async_queue_status EVICTED');
    is($st{5}, 'REJECTED', 'i=5: REJECTED');
    my @served = map { $_->[0] } sort { $a->[1] <=> $b->[1] }
        grep { $_->[3] == 200 } @log;
    is_deeply(\@served, [0, 4, 1, 6], 'served by class: 5, then 2 in arrival order');
    my $z = $ng->wait_zone_idle('q');
    is($z->{evicted}, 2, 'status counts the evictions');
    is($z->{priorities}{0}{evicted}, 2, 'per class');
    is($z->{priorities}{0}{rejected}, 1, 'the rejection per class');
    is(scalar($ng->crash_lines), 0, 'no alert or crash');
    $ng->stop;
};

subtest 'an evicted request is answered at once and its connection reused' => sub {
    $ng = AsyncNginx->new(name => 'queue-priority', workers => 1,
        http => priority_http(zone => 'zone=q:1m active=1 length=1 timeout=20s',
            hold => '2'));
    $ng->start;
    my $holder = send_get($ng, '/hold?i=0&p=0');
    sleep 0.2;
    my $low = send_get($ng, '/slow?i=1&p=0');   # keep-alive, parks
    sleep 0.2;
    my $high = send_get($ng, '/slow?i=2&p=7');  # evicts it
    my ($r, $took) = read_response($low, 1.5);
    ok($r, 'answered before the holder finished') or return;
    is($r->{status}, 503, 'with the reject status');
    ok($took < 1, 'at once') or diag "took ${took}s";
    unlike($r->{headers}{connection} // '', qr/close/i, 'keep-alive kept');
    send_get($ng, '/plain', $low);
    my ($again) = read_response($low, 2);
    ok($again && $again->{status} == 200,
        'the same connection serves the next request');
    my ($h) = read_response($high, 5);
    is($h && $h->{status}, 200, 'the higher class is served');
    close $_ for $holder, $low, $high;
    $ng->stop;
};

subtest 'an invalid priority counts as 0 and is logged once' => sub {
    $ng = AsyncNginx->new(name => 'queue-priority', workers => 2,
        http => priority_http());
    $ng->start;
    my @res = $ng->parallel([ map { { path => "/slow?i=$_&p=" . ($_ % 2 ? '9' : 'x') } }
        1 .. 6 ], gap => 0.01, timeout => 10);
    is(scalar(grep { $_->{status} == 200 } @res), 6, 'all served');
    my $z = $ng->wait_zone_idle('q');
    is($z->{priorities}{0}{passed} + $z->{priorities}{0}{queued}, 6,
        'all counted as class 0');
    my @warn = grep { /\[warn\].*invalid priority/ } split /\n/, $ng->error_log;
    is(scalar @warn, 1, 'one [warn] line') or diag join "\n", @warn;
    like($warn[0] // '', qr/async_queue "q": invalid priority "(9|x)" counted as 0/,
        'naming the zone and the value');
    $ng->stop;
};

done_testing;
