# A reload that changes a job zone's parameters (same name and size, so the
# zone and its jobs are kept) puts every new value in force: ttl,
# max_result, active and length.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AsyncNginx;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $port + 1;

sub jobs_http {
    my ($params) = @_;
    return <<"EOF";
    async_job_zone zone=jobs:1m $params;
    server {
        listen 127.0.0.1:$backend;
        location /slow { echo_sleep 10; echo "slow"; }
        location /big { echo "0123456789abcdef"; }
    }
    server {
        listen 127.0.0.1:\$PORT;
        location /slow { async_job jobs /internal/slow; }
        location /big { async_job jobs /internal/big; }
        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:$backend/;
        }
        location /jobs/ { async_job_status jobs; }
        location = /status { async_status; }
    }
EOF
}

sub json { my $j = eval { decode_json($_[0]{body}) }; return $j // {} }

sub zone_status {
    my ($ng) = @_;
    my $st = $ng->status or return {};
    return $st->{job_zones}{jobs} // {};
}

my $ng = AsyncNginx->new(name => 'jobs-reload', workers => 1,
    http => jobs_http('active=1 length=5 ttl=1h max_result=1m'));
$ng->start;

# before: the old values are in force
my $r = $ng->request('POST', '/big', headers => { Prefer => 'wait=5' });
is($r->{body}, "0123456789abcdef\n",
    'a 17-byte result is stored under max_result=1m') or diag explain $r;
is(zone_status($ng)->{max_result}, 1024 * 1024, 'max_result=1m');

my @new = $ng->reload(http => jobs_http('active=3 length=1 ttl=1s max_result=10'));
ok(@new >= 1, 'new workers run');
ok($ng->wait_retired, 'the old worker has exited');

subtest 'max_result and ttl' => sub {
    is(zone_status($ng)->{max_result}, 10, 'status: max_result=10');
    my $r = $ng->request('POST', '/big', headers => { Prefer => 'wait=5' });
    my $st = json($r);
    is($st->{status}, 'failed', 'a 17-byte result fails under max_result=10')
        or diag explain $r;
    my $id = $st->{id} // 'none';
    # ttl=1s: the finished job goes within about a second (1h before)
    my $gone = AsyncNginx::wait_until(
        sub { $ng->get("/jobs/$id")->{status} == 404 }, 5);
    ok($gone, 'expired after the new ttl of 1 s');
};

subtest 'active and length' => sub {
    my @ids = map { json($ng->request('POST', '/slow'))->{id} } 1 .. 3;
    is(scalar(grep { defined } @ids), 3, 'three accepted');
    my $running = AsyncNginx::wait_until(
        sub { (zone_status($ng)->{running} // 0) == 3 }, 5);
    ok($running, 'active=3: three run at once')
        or diag explain zone_status($ng);
    my $queued = $ng->request('POST', '/slow');
    is($queued->{status}, 202, 'length=1: one more waits');
    push @ids, json($queued)->{id};
    is($ng->request('POST', '/slow')->{status}, 503,
        'length=1: the next is refused');
    is($ng->request('DELETE', "/jobs/$_")->{status} =~ /^20[24]$/ ? 1 : 0, 1,
        'cancelled') for grep { defined } @ids;
};

unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
is(scalar($ng->crash_lines), 0, 'no alert or crash')
    or diag join "\n", $ng->crash_lines;
$ng->stop;

done_testing;
