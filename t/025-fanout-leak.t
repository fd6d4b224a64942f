# No leak: the worker's RSS stays flat over 10,000 fan-outs that mix
# complete answers, per-call timeouts (upstreams closed early), streamed
# answers and clients that go away mid-fan-out.
#
# Bound: 10,000 fan-outs in batches of 200 parallel connections; the whole
# suite gives up after 180 s. RSS is sampled after a warm-up of 4,000
# fan-outs (pools, free lists and the connection array reach their steady
# size) and again at the end; growth must stay under 2 MiB (a leak of only
# 200 bytes per fan-out would show as 1.6 MiB).
#
# Ports: $TEST_NGINX_SERVER_PORT and +1 (TEST_NGINX_FANOUT_BACKEND_PORT).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use AsyncNginx;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $ENV{TEST_NGINX_FANOUT_BACKEND_PORT} || $port + 1;
my $total = $ENV{TEST_FANOUT_LEAK_TOTAL} || 10_000;
my $warmup = 4_000;
my $batch = 200;
my $suite_deadline = time + 180;

my $http = <<"EOF";
    access_log off;
    server {
        listen 127.0.0.1:\$PORT backlog=1024;
        location /up/ { proxy_pass http://127.0.0.1:$backend/; }
        location = /fast { return 200 '{"ok": true}'; }
        location = /json {
            async_fetch a /fast;
            async_fetch b /up/sleep?t=0.01;
            async_fetch c /up/sleep?t=0.3 timeout=20ms optional;
        }
        location = /concat {
            async_aggregate concat;
            async_fetch a /fast;
            async_fetch b /up/sleep?t=0.3 optional hedge=5ms timeout=30ms;
            async_fetch c /fast;
        }
        location = /abort {
            async_fetch a /up/sleep?t=0.3;
            async_fetch b /up/sleep?t=0.3;
        }
    }
    server {
        listen 127.0.0.1:$backend backlog=1024;
        location = /sleep { echo_sleep \$arg_t; echo -n done; }
    }
EOF

my $ng = AsyncNginx->new(name => 'fanout-leak', workers => 1, http => $http);
$ng->start;
my ($worker) = $ng->worker_pids;

sub rss_kb {
    open my $fh, '<', "/proc/$worker/status" or return undef;
    while (<$fh>) {
        return $1 if /^VmRSS:\s+(\d+)\s+kB/;
    }
    return undef;
}

my @paths = ('/json', '/concat', '/json', '/abort');
my ($done, $answered, $aborted, $rss_warm) = (0, 0, 0, undef);
while ($done < $total && time < $suite_deadline) {
    my @reqs = map {
        my $path = $paths[ ($done + $_) % @paths ];
        $path eq '/abort' ? { path => $path, close_after => 0.02 }
                          : { path => $path };
    } 0 .. $batch - 1;
    my @res = $ng->parallel(\@reqs, timeout => 10);
    $answered += grep { $_->{status} == 200 } @res;
    $aborted += grep { $_->{aborted} } @res;
    $done += $batch;
    note("rss at $done: " . rss_kb()) if $ENV{TEST_FANOUT_LEAK_TRACE} && $done % 4000 == 0;
    if (!defined $rss_warm && $done >= $warmup) {
        sleep 0.5; # let the backends' sleeps end
        $rss_warm = rss_kb();
    }
}
sleep 0.5;
my $rss_end = rss_kb();

is($done, $total, "$total fan-outs within the time bound");
is($aborted, $total / 4, 'a quarter of the clients went away mid-fan-out');
is($answered, $total * 3 / 4, 'the others were answered');
ok(defined $rss_warm && defined $rss_end, 'RSS sampled');
my $growth = $rss_end - $rss_warm;
note("worker RSS: $rss_warm kB after warm-up, $rss_end kB at the end");
ok($growth < 2048, "RSS flat: grew $growth kB over "
    . ($total - $warmup) . " fan-outs (bound 2048 kB)");
is(scalar($ng->crash_lines), 0, 'no alert or crash')
    or diag join "\n", ($ng->crash_lines)[0 .. 5];
my @errors = grep { /\[error\]/ } split /\n/, $ng->error_log;
is(scalar @errors, 0, 'no [error]') or diag join "\n", @errors[0 .. 5];
$ng->stop;

done_testing;
