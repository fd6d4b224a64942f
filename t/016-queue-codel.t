# discipline=codel: without a standing queue the zone behaves as fifo; a
# queue that stays above codel_target for codel_interval answers its
# waiters past the target at once (DROPPED), on connections that stay open.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use AsyncNginx;
use QueueClient qw(read_response send_get);

sub codel_http {
    my ($zone) = @_;
    return <<"EOF";
    async_queue_zone $zone;
    log_format queue '\$arg_i \$msec \$status \$async_queue_status \$async_queue_time';
    server {
        listen 127.0.0.1:\$PORT reuseport;
        location = /status { async_status; }
        location /hold {
            access_log logs/queue.log queue;
            async_queue q;
            echo_sleep 0.3;
            echo ok;
        }
        location /slow {
            access_log logs/queue.log queue;
            async_queue q;
            echo_sleep 0.05;
            echo ok;
        }
        location = /plain { return 200 "plain\\n"; }
    }
EOF
}

my $zone = 'zone=q:1m active=1 length=100 timeout=20s discipline=codel '
    . 'codel_target=5ms codel_interval=100ms';
my $ng = AsyncNginx->new(name => 'queue-codel', workers => 2,
    http => codel_http($zone));

subtest 'short queues that drain are served as by fifo' => sub {
    $ng->start;
    for my $pair (1 .. 5) {
        my @res = $ng->parallel([ { path => "/slow?i=${pair}a" },
            { path => "/slow?i=${pair}b" } ], gap => 0.005, timeout => 10);
        is_deeply([ map { $_->{status} } @res ], [200, 200],
            "pair $pair: both served");
    }
    my $z = $ng->wait_zone_idle('q');
    is($z->{dropped}, 0, 'nothing dropped');
    is($z->{discipline}, 'codel', 'status names the discipline');
    is($z->{codel}{target_ms}, 5, 'status shows codel_target');
    is($z->{codel}{interval_ms}, 100, 'status shows codel_interval');
    ok(!$z->{codel}{dropping}, 'not in the dropping state');
    my %st;
    $st{ (split ' ')[3] }++ for $ng->log_file('queue.log');
    is($st{DROPPED} // 0, 0, 'no DROPPED in the log');
};

subtest 'a standing queue: waiters past the target are dropped at once' => sub {
    $ng->stop;
    $ng->start;
    my @res = $ng->parallel([ map { { path => "/slow?i=$_" } } 1 .. 30 ],
        gap => 0.01, timeout => 30);
    my @log = map { [split ' '] } $ng->log_file('queue.log');
    my @dropped = grep { $_->[3] eq 'DROPPED' } @log;
    cmp_ok(scalar @dropped, '>=', 1, 'some waiters were dropped');
    is(scalar(grep { $_->[2] == 503 } @dropped), scalar @dropped,
        'with the reject status');
    my @r503 = grep { $_->{status} == 503 } @res;
    is(scalar @r503, scalar @dropped, 'every 503 was a drop');
    ok(!(grep { !defined $_->{time} || $_->{time} > 1 } @r503),
        'drops are answered long before a fifo queue would serve them');
    like($r503[0]{headers}{'retry-after'} // '', qr/^\d+$/, 'with Retry-After');
    my $z = $ng->wait_zone_idle('q');
    is($z->{dropped}, scalar @dropped, 'status counts the drops');
    is($z->{priorities}{0}{dropped}, scalar @dropped, 'per class too');
    is($z->{passed} + $z->{queued} + $z->{dropped}, 30,
        'every request counted once');
    my $p = $ng->get('/status?format=prometheus');
    like($p->{body},
        qr/^nginx_async_queue_requests_total\{zone="q",outcome="dropped"\} \d+$/m,
        'Prometheus: dropped');
    is(scalar($ng->crash_lines), 0, 'no alert or crash');
};

subtest 'a dropped request is answered at once and its connection reused' => sub {
    $ng->stop;
    $ng = AsyncNginx->new(name => 'queue-codel', workers => 1,
        http => codel_http($zone));
    $ng->start;
    my @s = (send_get($ng, '/hold?i=0'));
    for my $i (1 .. 3) {
        sleep 0.02;
        push @s, send_get($ng, "/slow?i=$i");
    }
    sleep 0.02;
    my $k = send_get($ng, '/slow?i=k');
    my ($r, $took) = read_response($k, 5);
    ok($r, 'answered') or return;
    is($r->{status}, 503, 'dropped with the reject status');
    unlike($r->{headers}{connection} // '', qr/close/i, 'keep-alive kept');
    send_get($ng, '/plain', $k);
    my ($again) = read_response($k, 2);
    ok($again && $again->{status} == 200,
        'the same connection serves the next request');
    my %st = map { (split ' ')[0] => (split ' ')[3] } $ng->log_file('queue.log');
    is($st{k}, 'DROPPED', '$async_queue_status DROPPED');
    close $_ for @s, $k;
    $ng->stop;
};

done_testing;
