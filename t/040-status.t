# async_status under load: a burst through a queue zone and a mix of
# fan-outs on two workers; the JSON and the Prometheus text report the same
# numbers, which add up to what was sent. Counters survive a reload and a
# worker crash. Access control is nginx's own allow/deny.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AsyncNginx;
use PromText;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $bport = $port + 1;
my $bport2 = $port + 2;

my $http = <<"EOF";
    async_queue_zone zone=burst:1m active=1 length=3 timeout=1500ms;
    log_format fo '\$pid \$uri \$status \$async_completed';
    upstream hedge_pair {
        # round robin: a worker's first pick is the slow server, its second
        # the fast one, so the hedged attempt of a call wins
        server 127.0.0.1:$bport;
        server 127.0.0.1:$bport2;
    }
    server {
        listen 127.0.0.1:$bport;
        location = /b/fast { echo "fast"; }
        location = /b/slow { echo_sleep 2; echo "slow"; }
        location = /b/err { return 500; }
        location = /b/hedge { echo_sleep 2; echo "slow"; }
    }
    server {
        listen 127.0.0.1:$bport2;
        location = /b/hedge { echo "fast"; }
    }
    server {
        listen 127.0.0.1:\$PORT reuseport;
        location = /status { async_status; }
        location = /status/open { allow 127.0.0.1; deny all; async_status; }
        location = /status/closed { deny 127.0.0.1; allow all; async_status; }
        location = /status/quiet { server_tokens off; async_status; }
        location = /status/build { server_tokens build; async_status; }

        location = /burst {
            async_queue burst;
            echo_sleep 1;
            echo "done";
        }

        location /up/ {
            proxy_pass http://127.0.0.1:$bport/b/;
        }
        location = /up-hedge {
            proxy_pass http://hedge_pair/b/hedge;
        }
        location = /fo/ok {
            access_log logs/fo.log fo;
            async_fetch a /up/fast;
            async_fetch b /up/fast;
        }
        location = /fo/partial {
            async_fetch a /up/fast;
            async_fetch b /up/slow timeout=200ms optional;
        }
        location = /fo/fail {
            async_fetch a /up/err;
        }
        location = /fo/hedge {
            async_fetch h /up-hedge hedge=200ms timeout=5s;
        }
        location = /fo/abort {
            async_fetch a /up/slow;
        }
    }
EOF

sub status_json {
    my ($ng, $path) = @_;
    my $r = $ng->get($path // '/status');
    return ($r, eval { decode_json($r->{body}) });
}

sub status_prom {
    my ($ng, %headers) = @_;
    my $path = delete $headers{path} // '/status?format=prometheus';
    my $r = $ng->get($path, headers => \%headers);
    return ($r, PromText::parse($r->{body}));
}

sub sum_outcomes {
    my ($z) = @_;
    return $z->{passed} + $z->{queued} + $z->{rejected} + $z->{timed_out}
        + $z->{cancelled};
}

my $ng = AsyncNginx->new(name => 'status', workers => 2, http => $http);
$ng->start;

subtest 'fresh: every section present, counters at zero' => sub {
    my ($r, $st) = status_json($ng);
    is($r->{status}, 200, 'status 200');
    like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON');
    is($r->{headers}{vary}, 'Accept', 'Vary: Accept');
    ok($st, 'valid JSON') or diag $r->{body};
    is($st->{module}, 'ngx_http_async_module', 'module name');
    like($st->{version}, qr/^\d+\.\d+\.\d+$/, 'module version');
    like($st->{nginx_version}, qr/^1\.\d+\.\d+$/, 'nginx version');
    is_deeply([sort keys %{ $st->{queue_zones} }], ['burst'], 'queue zone');
    is(ref $st->{job_zones}, 'HASH', 'job zones');
    is_deeply($st->{fanout}, { map { $_ => 0 } qw(started completed partial
        failed timed_out_calls cancelled_calls hedged_calls hedge_wins) },
        'fan-out counters, all zero');
    my $z = $st->{queue_zones}{burst};
    is_deeply([ @$z{qw(active max_active waiting length timeout_ms)} ],
        [0, 1, 0, 3, 1500], 'zone limits');
    is(sum_outcomes($z), 0, 'no request yet');
    is($z->{wait_seconds}{count}, 0, 'empty histogram');
};

subtest 'burst through the queue: the numbers add up' => sub {
    # active=1 length=3 timeout=1.5s, each request 1s:
    #  1 passes; 2 waits ~1s and is queued; 3 parks and leaves after 0.3s
    #  (cancelled); 4 parks and times out at 1.5s (2 holds the slot until
    #  ~2s); 5..8 find the queue full (rejected)
    my @reqs = map { { path => "/burst?i=$_" } } 1 .. 8;
    $reqs[2]{close_after} = 0.3;
    my $t0 = time;
    my @res = $ng->parallel(\@reqs, gap => 0.02, timeout => 10);
    my @codes = map { $_->{aborted} ? 'gone' : $_->{status} } @res;
    is_deeply(\@codes, [200, 200, 'gone', 503, 503, 503, 503, 503],
        'statuses as planned') or diag "@codes";

    my $z = $ng->wait_zone_idle('burst', 5);
    is(sum_outcomes($z), 8, 'JSON: passed+queued+rejected+timed_out+cancelled'
        . ' == requests sent');
    is_deeply([ @$z{qw(passed queued rejected timed_out cancelled)} ],
        [1, 1, 4, 1, 1], 'JSON: one of each, four rejected');
    my $h = $z->{wait_seconds};
    is($h->{count}, $z->{passed} + $z->{queued},
        'the wait histogram counts the admitted');
    is($h->{buckets}{'+Inf'}, $h->{count}, '+Inf bucket == count');
    ok($h->{sum} >= 0.8 && $h->{sum} < 2, "wait sum about 1s: $h->{sum}");
    is($h->{buckets}{'0.001'}, 1, 'the passed request waited 0');

    my ($r, $p) = status_prom($ng);
    is($r->{status}, 200, 'Prometheus: 200');
    is($r->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
        'Prometheus: content type of the 0.0.4 text format');
    is_deeply($p->{errors}, [], 'Prometheus: strict format check')
        or diag $r->{body};
    my $total = 0;
    for my $o (qw(passed queued rejected timed_out cancelled)) {
        my $v = PromText::sample($p, 'nginx_async_queue_requests_total',
            { zone => 'burst', outcome => $o });
        is($v, $z->{$o}, "Prometheus: $o as in JSON");
        $total += $v // 0;
    }
    is($total, 8, 'Prometheus: the outcomes add up to requests sent');
    is(PromText::sample($p, 'nginx_async_queue_wait_seconds_count',
        { zone => 'burst' }), $h->{count}, 'Prometheus: histogram count');
    is(PromText::sample($p, 'nginx_async_queue_wait_seconds_bucket',
        { zone => 'burst', le => '+Inf' }), $h->{count},
        'Prometheus: +Inf bucket');
    is(PromText::sample($p, 'nginx_async_queue_wait_seconds_sum',
        { zone => 'burst' }), sprintf('%.3f', $h->{sum}),
        'Prometheus: histogram sum');
    is(PromText::sample($p, 'nginx_async_queue_max_active',
        { zone => 'burst' }), 1, 'Prometheus: max_active gauge');
    is(PromText::sample($p, 'nginx_async_queue_timeout_seconds',
        { zone => 'burst' }), '1.500', 'Prometheus: timeout in seconds');
    is($p->{families}{nginx_async_queue_wait_seconds}{type}, 'histogram',
        'a real histogram');
    is($p->{families}{nginx_async_queue_requests_total}{type}, 'counter',
        'requests_total is a counter');

    my ($ok, $out) = PromText::reference_check($r->{body});
    ok($ok, 'python3-prometheus-client parses it') or diag $out;
    like($out, qr/^nginx_async_queue_wait_seconds histogram nginx_async_queue_wait_seconds_bucket le=\+Inf,zone=burst 2\.0$/m,
        'reference parser: histogram +Inf bucket');
    like($out, qr/^nginx_async_queue_requests counter nginx_async_queue_requests_total outcome=rejected,zone=burst 4\.0$/m,
        'reference parser: counter with labels');
};

subtest 'fan-outs on two workers: totals shared by all workers' => sub {
    my @ok = $ng->parallel([ map { { path => "/fo/ok?i=$_" } } 1 .. 12 ],
        timeout => 10);
    is(scalar(grep { $_->{status} == 200 } @ok), 12, '12 complete fan-outs');
    my %pids = map { (split ' ')[0] => 1 } $ng->log_file('fo.log');
    is(scalar keys %pids, 2, 'both workers served fan-outs');

    my $partial = $ng->get('/fo/partial');
    is($partial->{status}, 200, 'partial answer is 200');
    is($partial->{headers}{'x-async-completed'}, 'false', 'partial');
    my $fail = $ng->get('/fo/fail');
    is($fail->{status}, 502, 'a failed required call: 502');
    my $hedge = $ng->get('/fo/hedge');
    is($hedge->{status}, 200, 'hedged fan-out: 200');
    like($hedge->{body}, qr/fast/, 'won by the hedged attempt');
    ok($hedge->{time} < 1.5, "without waiting for the slow one: $hedge->{time}s");
    my @abort = $ng->parallel([ { path => '/fo/abort', close_after => 0.3 } ],
        timeout => 2);
    ok($abort[0]{aborted}, 'client left a running fan-out');

    my $st;
    my $deadline = time + 5;
    while (time < $deadline) {
        (undef, $st) = status_json($ng);
        my $f = $st->{fanout};
        last if $f->{completed} + $f->{partial} + $f->{failed} == 16;
        sleep 0.05;
    }
    is_deeply($st->{fanout}, { started => 16, completed => 13, partial => 1,
        failed => 2, timed_out_calls => 1, cancelled_calls => 1,
        hedged_calls => 1, hedge_wins => 1 }, 'JSON fan-out totals')
        or diag explain $st->{fanout};

    my ($r, $p) = status_prom($ng, path => '/status',
        Accept => 'text/plain;version=0.0.4;q=0.5,*/*;q=0.1');
    is_deeply($p->{errors}, [], 'Prometheus (by Accept): strict check')
        or diag $r->{body};
    is(PromText::sample($p, 'nginx_async_fanout_started_total'), 16,
        'Prometheus: started');
    my $fin = 0;
    for my $o (qw(completed partial failed)) {
        my $v = PromText::sample($p, 'nginx_async_fanout_finished_total',
            { outcome => $o });
        is($v, $st->{fanout}{$o}, "Prometheus: finished $o");
        $fin += $v // 0;
    }
    is($fin, 16, 'Prometheus: started == completed + partial + failed');
    is(PromText::sample($p, 'nginx_async_fanout_hedged_calls_total'), 1,
        'Prometheus: hedged calls');
    is(PromText::sample($p, 'nginx_async_fanout_hedge_wins_total'), 1,
        'Prometheus: hedge wins');
    is(PromText::sample($p, 'nginx_async_fanout_calls_failed_total',
        { reason => 'timed_out' }), 1, 'Prometheus: timed-out calls');
    is(PromText::sample($p, 'nginx_async_fanout_calls_failed_total',
        { reason => 'cancelled' }), 1, 'Prometheus: cancelled calls');
    my ($ok, $out) = PromText::reference_check($r->{body});
    ok($ok, 'python3-prometheus-client parses it') or diag $out;
};

subtest 'counters survive a reload and a worker crash' => sub {
    my (undef, $before) = status_json($ng);
    my @new = $ng->reload;
    ok(@new >= 2, 'new workers after reload');
    my (undef, $after) = status_json($ng);
    is_deeply($after->{fanout}, $before->{fanout},
        'fan-out totals kept across reload (same zone)');
    is(sum_outcomes($after->{queue_zones}{burst}), 8,
        'queue counters kept across reload');

    my @pids = $ng->worker_pids;
    kill 'KILL', $pids[0];
    my $deadline = time + 5;
    while (time < $deadline) {
        my @now = $ng->worker_pids;
        last if @now == 2 && !grep { $_ == $pids[0] } @now;
        sleep 0.1;
    }
    isnt(($ng->worker_pids)[0], $pids[0], 'the killed worker was replaced');
    my @ok = $ng->parallel([ map { { path => "/fo/ok?i=c$_" } } 1 .. 4 ],
        timeout => 10);
    my (undef, $crash) = status_json($ng);
    is($crash->{fanout}{started}, $before->{fanout}{started} + 4,
        'totals go on after a worker was killed');
    is($crash->{fanout}{completed}, $before->{fanout}{completed} + 4,
        'and count the new fan-outs once');
};

subtest 'format negotiation' => sub {
    my ($r) = status_prom($ng, path => '/status',
        Accept => 'text/html,application/xhtml+xml,*/*;q=0.8');
    like($r->{headers}{'content-type'}, qr{^application/json}, 'browser: JSON');
    ($r) = status_prom($ng, path => '/status?format=json',
        Accept => 'text/plain; version=0.0.4');
    like($r->{headers}{'content-type'}, qr{^application/json},
        '?format=json wins over Accept');
    ($r) = status_prom($ng, path => '/status', Accept => 'text/plain');
    like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
        'Accept: text/plain gets the text format');
    # a tie (equal q) is ours to break (RFC 9110 12.5.1): text, in any order
    for my $accept ('text/plain, application/json',
                    'application/json, text/plain') {
        ($r) = status_prom($ng, path => '/status', Accept => $accept);
        like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
            "Accept: $accept (a tie) gets the text format");
    }
    ($r) = status_prom($ng, path => '/status',
        Accept => 'text/plain;q=0.5, application/json');
    like($r->{headers}{'content-type'}, qr{^application/json},
        'JSON asked more strongly: JSON');
    $r = $ng->get('/status?format=xml');
    is($r->{status}, 400, 'unknown format: 400');
    $r = $ng->request('HEAD', '/status?format=prometheus');
    is($r->{status}, 200, 'HEAD: 200');
    is($r->{body}, '', 'HEAD: no body');
    $r = $ng->request('POST', '/status', body => 'x');
    is($r->{status}, 405, 'POST: 405');
};

subtest 'the nginx version only with server_tokens' => sub {
    my ($r, $st) = status_json($ng, '/status/quiet');
    ok($st, 'valid JSON') or diag $r->{body};
    ok(!exists $st->{nginx_version}, 'server_tokens off: no nginx_version');
    like($st->{version}, qr/^\d+\.\d+\.\d+$/, 'the module version stays');
    ($r, $st) = status_json($ng, '/status/build');
    like($st->{nginx_version}, qr/^1\.\d+\.\d+$/, 'server_tokens build: shown');

    my ($pr, $p) = status_prom($ng, path => '/status/quiet?format=prometheus');
    is_deeply($p->{errors}, [], 'valid text format');
    my ($info) = @{ $p->{families}{nginx_async_info}{samples} || [] };
    ok($info, 'nginx_async_info present') or diag $pr->{body};
    is_deeply([sort keys %{ $info->{labels} }], ['version'],
        'server_tokens off: no nginx_version label');

    ($pr, $p) = status_prom($ng);
    ($info) = @{ $p->{families}{nginx_async_info}{samples} || [] };
    like($info->{labels}{nginx_version}, qr/^1\.\d+\.\d+$/,
        'default (server_tokens on): nginx_version label');
};

subtest 'allow / deny' => sub {
    is($ng->get('/status/open')->{status}, 200, 'allowed address: 200');
    is($ng->get('/status/closed')->{status}, 403, 'denied address: 403');
    is($ng->get('/status/closed?format=prometheus')->{status}, 403,
        'denied in either format');
};

subtest 'error log' => sub {
    # expected: the worker killed on purpose, the denied status requests
    my @errors = grep { /\[error\]|\[alert\]|\[emerg\]|\[crit\]/
        && !/exited on signal 9|access forbidden by rule/ } split /\n/, $ng->error_log;
    is_deeply(\@errors, [], 'no [error] or worse in the error log');
};

$ng->stop;
done_testing;
