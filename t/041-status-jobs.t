# async_status reports job zones: jobs held by state while they run and
# after, and the totals since the zone was created, in JSON and in the
# Prometheus text; the numbers add up to the jobs submitted.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AsyncNginx;
use PromText;

my $ng = AsyncNginx->new(name => 'status-jobs', workers => 2, http => <<'EOF');
    async_job_zone zone=work:1m active=1 length=2 ttl=1m max_result=4k;
    server {
        listen 127.0.0.1:$PORT reuseport;
        location = /status { async_status; }
        location = /backend/work { echo_sleep 1; echo '{"done":true}'; }
        location = /submit { async_job work /backend/work; }
        location /jobs/ { async_job_status work; }
    }
EOF
$ng->start;

sub job_zone {
    my $r = $ng->get('/status');
    my $st = eval { decode_json($r->{body}) } or return undef;
    return $st->{job_zones}{work};
}

my $z = job_zone();
is_deeply($z, { queued => 0, running => 0, completed => 0, failed => 0,
    cancelled => 0, expired => 0, stored_bytes => 0, max_result => 4096,
    store => 'shm', totals => { submitted => 0, rejected => 0, completed => 0, failed => 0,
        cancelled => 0 } }, 'an empty job zone');

# active=1 length=2: one runs, two wait, two are turned away
my @res = $ng->parallel([ map { { method => 'POST', path => "/submit?i=$_",
    body => '{}' } } 1 .. 5 ], gap => 0.05, timeout => 5);
my @codes = map { $_->{status} } @res;
is_deeply([ sort @codes ], [202, 202, 202, 503, 503], 'three accepted')
    or diag "@codes";
my @hrefs = map { $_->{headers}{location} } grep { $_->{status} == 202 } @res;

$z = job_zone();
is($z->{running}, 1, 'one job runs');
is($z->{queued}, 2, 'two wait');
is($z->{totals}{submitted}, 3, 'submitted: accepted ones');
is($z->{totals}{rejected}, 2, 'rejected: turned away');
is($z->{totals}{submitted} + $z->{totals}{rejected}, 5,
    'submitted + rejected == jobs sent');

my ($r) = $ng->get('/status?format=prometheus');
my $p = PromText::parse($r->{body});
is_deeply($p->{errors}, [], 'Prometheus: strict check') or diag $r->{body};
is(PromText::sample($p, 'nginx_async_job_jobs',
    { zone => 'work', state => 'running' }), 1, 'Prometheus: running');
is(PromText::sample($p, 'nginx_async_job_jobs',
    { zone => 'work', state => 'queued' }), 2, 'Prometheus: queued');
is(PromText::sample($p, 'nginx_async_job_rejected_total', { zone => 'work' }),
    2, 'Prometheus: rejected');
my ($ok, $out) = PromText::reference_check($r->{body});
ok($ok, 'python3-prometheus-client parses it') or diag $out;

my $deadline = time + 10;
while (time < $deadline) {
    $z = job_zone();
    last if $z && $z->{completed} == 3;
    sleep 0.1;
}
is($z->{completed}, 3, 'all three completed (held now)');
is($z->{running} + $z->{queued}, 0, 'nothing runs or waits');
is($z->{totals}{completed}, 3, 'totals: completed');
ok($z->{stored_bytes} >= 3 * length(qq({"done":true}\n)),
    "results are stored: $z->{stored_bytes} bytes");

my $del = $ng->request('DELETE', $hrefs[0]);
is($del->{status}, 204, 'a finished job is deleted');
$z = job_zone();
is($z->{completed}, 2, 'two completed jobs held now');
is($z->{totals}{completed}, 3, 'the total stays');

($r) = $ng->get('/status', headers => { Accept => 'text/plain' });
$p = PromText::parse($r->{body});
is_deeply($p->{errors}, [], 'Prometheus again: strict check');
my $fin = 0;
$fin += PromText::sample($p, 'nginx_async_job_finished_total',
    { zone => 'work', outcome => $_ }) // 0 for qw(completed failed cancelled);
is($fin, 3, 'Prometheus: finished_total adds up to the accepted jobs');
is(PromText::sample($p, 'nginx_async_job_submitted_total', { zone => 'work' }),
    3, 'Prometheus: submitted');

my @bad = grep { /\[(?:error|alert|crit|emerg)\]/ } split /\n/, $ng->error_log;
is_deeply(\@bad, [], 'no [error] in the error log');
$ng->stop;
done_testing;
