# Job progress: the job's request carries X-Async-Job-Id; its backend
# reports PUT <status-prefix>/<id>/progress {"percent":N,"message":"..."};
# the status answer shows "progress" while the job runs; bad reports are
# 400, unknown jobs 404, jobs not running 409; limit_except with
# allow/deny keeps reports to the backends' addresses. Two workers: a
# report taken by one is seen by the other.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AsyncNginx;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $port + 1;

my $ng = AsyncNginx->new(name => 'jobs-progress', workers => 2, http => <<"EOF");
    async_job_zone zone=jobs:1m active=4 length=10;
    server {
        listen 127.0.0.1:$backend;
        location /slow { echo_sleep 3; echo "slow"; }
        location /whoami { echo -n \$http_x_async_job_id; }
        # reports itself, as a backend would, through the front nginx
        location /reporting {
            echo_sleep 0.3;
            echo_subrequest PUT /report/\$http_x_async_job_id/progress
                            -b '{"percent":20,"message":"first"}';
            echo_sleep 1;
            echo_subrequest PUT /report/\$http_x_async_job_id/progress
                            -b '{"percent":70,"message":"second"}';
            echo_sleep 1;
            echo "reported";
        }
        location /report/ {
            proxy_pass http://127.0.0.1:\$PORT/jobs/;
        }
    }
    server {
        listen 127.0.0.1:\$PORT;
        location /slow { async_job jobs /internal/slow; }
        location /whoami { async_job jobs /internal/whoami; }
        location /reporting { async_job jobs /internal/reporting; }
        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:$backend/;
        }
        location /jobs/ {
            async_job_status jobs;
            limit_except GET DELETE {
                allow 127.0.0.1;
                deny all;
            }
        }
        # the same jobs where nobody may report
        location /ro/ {
            async_job_status jobs;
            limit_except GET DELETE {
                deny all;
            }
        }
        location /open/ { async_job_status jobs; }
    }
EOF
$ng->start;

sub submit {
    my ($path, %opt) = @_;
    my $r = $ng->request('POST', $path, %opt);
    return eval { decode_json($r->{body}) }->{id};
}

sub status {
    my ($id, $prefix) = @_;
    my $r = $ng->get(($prefix // '/jobs') . "/$id");
    return eval { decode_json($r->{body}) } // {};
}

sub report {
    my ($id, $body, $prefix) = @_;
    return $ng->request('PUT', ($prefix // '/jobs') . "/$id/progress",
        body => $body, headers => { 'Content-Type' => 'application/json' });
}

sub running {
    my ($id) = @_;
    return AsyncNginx::wait_until(sub { status($id)->{status} eq 'running' }, 5);
}

subtest 'the job request carries X-Async-Job-Id, not the client\'s' => sub {
    my $id = submit('/whoami', headers => { 'X-Async-Job-Id' => 'spoofed' });
    ok(AsyncNginx::wait_until(sub { status($id)->{status} eq 'completed' }, 5),
        'completed');
    is($ng->get("/jobs/$id/result")->{body}, $id, 'the backend saw its id');
};

subtest 'a report shows in the status while the job runs' => sub {
    my $id = submit('/slow');
    ok(running($id), 'running');
    ok(!exists status($id)->{progress}, 'no progress before a report');
    my $r = report($id, '{"percent":42,"message":"half \"way\" \u00e9"}');
    is($r->{status}, 204, 'report: 204');
    # two workers: each answers from the shared zone
    for my $i (1 .. 4) {
        is_deeply(status($id)->{progress},
            { percent => 42, message => "half \"way\" \x{e9}" },
            "status $i shows it");
    }
    is(report($id, '{"percent":43}')->{status}, 204, 'a report without message');
    is_deeply(status($id)->{progress}, { percent => 43, message => '' },
        'message empty');
    ok(AsyncNginx::wait_until(sub { status($id)->{status} eq 'completed' }, 6),
        'completed');
    ok(!exists status($id)->{progress}, 'no progress once final');
    my $late = report($id, '{"percent":99}');
    is($late->{status}, 409, 'a report after the end: 409');
    is(eval { decode_json($late->{body}) }->{status}, 'completed',
        '409 carries the status');
};

subtest 'the backend reports through X-Async-Job-Id' => sub {
    my $id = submit('/reporting');
    my %seen;
    AsyncNginx::wait_until(sub {
        my $s = status($id);
        $seen{"$s->{progress}{percent} $s->{progress}{message}"}++
            if $s->{progress};
        return $s->{status} eq 'completed';
    }, 8);
    ok($seen{'20 first'}, 'saw 20 first');
    ok($seen{'70 second'}, 'saw 70 second');
    is(status($id)->{status}, 'completed', 'completed');
    is($ng->get("/jobs/$id/result")->{body}, "reported\n", 'the result');
};

subtest 'bad reports: 400, unknown 404, not allowed 405' => sub {
    my $id = submit('/slow');
    ok(running($id), 'running');
    my @bad = ('', 'nope', '[1]', '{}', '{"percent":101}', '{"percent":-1}',
        '{"percent":5.5}', '{"percent":"5"}', '{"percent":5,"message":7}',
        '{"percent":5,"message":"' . ('m' x 257) . '"}');
    for my $b (@bad) {
        my $r = report($id, $b);
        is($r->{status}, 400, "'" . substr($b, 0, 30) . "': 400");
        like($r->{body}, qr/^\{"error":"[^"]+"\}\n$/, 'says why');
    }
    is(report($id, '{"percent":5,"message":"' . ('m' x 256) . '"}')->{status},
        204, '256-byte message: 204');
    is(report($id, '{"percent":5,"x":' . ('1' x 5000) . '}')->{status}, 413,
        'a body over 4 kB: 413');
    is(report('AAAAAAAAAAAAAAAAAAAAAA', '{"percent":1}')->{status}, 404,
        'unknown id: 404');
    is(report('nope', '{"percent":1}')->{status}, 404, 'no id: 404');
    my $get = $ng->get("/jobs/$id/progress");
    is($get->{status}, 405, 'GET .../progress: 405');
    is($get->{headers}{allow}, 'PUT', 'Allow: PUT');
    is($ng->request('PUT', "/jobs/$id", body => '{}')->{status}, 405,
        'PUT on the job itself: 405');
    is(status($id)->{progress}{percent}, 5, 'the last good report stays');
    $ng->request('DELETE', "/jobs/$id");
};

subtest 'allow/deny through limit_except' => sub {
    my $id = submit('/slow');
    ok(running($id), 'running');
    is(report($id, '{"percent":10}', '/ro')->{status}, 403,
        'denied location: 403');
    is(status($id, '/ro')->{status}, 'running', 'GET still answers there');
    is($ng->request('DELETE', "/ro/$id")->{status}, 202,
        'DELETE still answers there');
    my $id2 = submit('/slow');
    ok(running($id2), 'running');
    is(report($id2, '{"percent":11}', '/jobs')->{status}, 204,
        'allowed address: 204');
    is(report($id2, '{"percent":12}', '/open')->{status}, 204,
        'no limit_except: anyone holding the id');
    is(status($id2, '/ro')->{progress}{percent}, 12, 'seen everywhere');
    $ng->request('DELETE', "/jobs/$id2");
};

subtest 'a queued job does not take reports' => sub {
    my @ids = map { submit('/slow') } 1 .. 6; # active=4
    my ($queued) = grep { status($_)->{status} eq 'queued' } @ids;
    ok($queued, 'one is queued');
    my $r = report($queued, '{"percent":1}');
    is($r->{status}, 409, 'queued: 409');
    $ng->request('DELETE', "/jobs/$_") for @ids;
};

my @errors = grep { /\[(error|alert|crit)\]/ && !/access forbidden by rule/ }
    split /\n/, $ng->error_log;
is_deeply(\@errors, [], 'no [error] line but the denied report');
like($ng->error_log, qr/access forbidden by rule.*"PUT \/ro\//,
    'the denied report is logged');
is(scalar($ng->crash_lines), 0, 'no crash');
$ng->stop;

done_testing;
