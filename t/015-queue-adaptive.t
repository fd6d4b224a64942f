# active=auto: the zone's limit grows under a fast backend and shrinks under
# a slow one, within min= and max=, and a reload keeps what it learned.
# No timing targets here: how fast it follows is bench/queue-adaptive.sh.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use AsyncNginx;

sub adaptive_http {
    my ($zone) = @_;
    return <<"EOF";
    async_queue_zone $zone;
    log_format queue '\$arg_i \$status \$async_queue_status \$async_queue_limit';
    server {
        listen 127.0.0.1:\$PORT reuseport;
        location = /status { async_status; }
        location /fast {
            access_log logs/queue.log queue;
            async_queue q;
            echo_sleep 0.05;
            echo ok;
        }
        location /slow {
            access_log logs/queue.log queue;
            async_queue q;
            echo_sleep 0.4;
            echo ok;
        }
    }
EOF
}

my $zone = 'zone=q:1m active=auto min=2 max=16 length=1000 timeout=60s';
my $ng = AsyncNginx->new(name => 'queue-adaptive', workers => 2,
    http => adaptive_http($zone));

sub limit_now {
    my $st = $ng->status or return undef;
    return $st->{queue_zones}{q}{adaptive_limit};
}

sub burst {
    my ($path, $n) = @_;
    my @res = $ng->parallel([ map { { path => "$path?i=$_" } } 1 .. $n ],
        timeout => 60);
    return scalar grep { $_->{status} == 200 } @res;
}

$ng->start;

my $l = limit_now();
is($l->{limit}, 2, 'a cold zone starts at min');
is($l->{min}, 2, 'status shows min');
is($l->{max}, 16, 'status shows max');
is($ng->status->{queue_zones}{q}{max_active}, 2, 'max_active is the limit');

my $served = 0;
for (1 .. 3) {
    $served += burst('/fast', 48);
}
is($served, 144, 'every fast request served');
$l = limit_now();
my $up = $l->{limit};
cmp_ok($up, '>', 2, 'the limit grew under a fast backend');
cmp_ok($up, '<=', 16, 'and stays within max');
cmp_ok($l->{adjustments}, '>=', 1, 'adjustments are counted');
cmp_ok($l->{min_ms}, '>', 0, 'the minimum service time is measured');
cmp_ok($l->{sampled_ms}, '>=', $l->{min_ms}, 'the sampled one too');
my @lim = map { (split ' ')[3] } $ng->log_file('queue.log');
ok((grep { $_ == $up } @lim) || $lim[-1] <= $up,
    '$async_queue_limit logs the limit');

# a reload with the same zone keeps the learned limit
$ng->reload(http => adaptive_http($zone));
is(limit_now()->{limit}, $up, 'a reload keeps the learned limit');

$served = burst('/slow', 2 * $up);
is($served, 2 * $up, 'every slow request served');
my $down = limit_now()->{limit};
note "limit: up $up, down $down";
cmp_ok($down, '<', $up, 'the limit shrank under a slow backend');
cmp_ok($down, '>=', 2, 'and stays within min');

# new bounds on reload: the learned limit is clamped into them
$ng->reload(http => adaptive_http(
    'zone=q:1m active=auto min=' . ($down + 1) . ' max=16 length=1000 timeout=60s'));
is(limit_now()->{limit}, $down + 1, 'a reload with a higher min clamps it');

my $p = $ng->get('/status?format=prometheus');
like($p->{body}, qr/^nginx_async_queue_max_active\{zone="q"\} \d+$/m,
    'Prometheus: the limit');
like($p->{body}, qr/^nginx_async_queue_limit_min_seconds\{zone="q"\} \d+\.\d{3}$/m,
    'Prometheus: the minimum service time');
like($p->{body}, qr/^nginx_async_queue_limit_adjustments_total\{zone="q"\} \d+$/m,
    'Prometheus: adjustments');
is(scalar($ng->crash_lines), 0, 'no alert or crash');
$ng->stop;

done_testing;
