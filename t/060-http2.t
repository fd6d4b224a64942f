# The module's promises hold for requests that arrive as streams of one
# HTTP/2 connection (h2c, prior knowledge): parked streams are admitted in
# arrival order; an RST_STREAM of a parked stream frees its place at once
# and counts as cancelled; a fan-out answers, and a reset of its stream
# cancels the calls (the backend logs 499); a job is submitted, long-polled
# and read over one connection.  The client is t/lib/h2client.py (nghttp
# cannot reset one stream on demand); h2load runs one overload burst.
#
# nginx < 1.25.1 turns HTTP/2 on with `listen ... http2`, later ones with
# `http2 on;`: the configuration follows the binary's version.
#
# Ports: $TEST_NGINX_SERVER_PORT (HTTP/2 server), +1 the backend server
# block (HTTP/1.1), +2 the origin behind it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use IO::Socket::INET;
use AsyncNginx;
use H2Client;

my $bin = AsyncNginx::binary();
my $v = `$bin -V 2>&1`;
plan skip_all => "nginx ($bin) is built without http_v2_module"
    unless $v =~ /--with-http_v2_module/;
plan skip_all => 'python3-h2 is not installed (t/lib/h2client.py needs it)'
    unless H2Client::available();
my ($version) = $v =~ m{nginx/(\d+\.\d+\.\d+)};
my $new_style = version_num($version) >= version_num('1.25.1');
my ($listen_h2, $http2_on) = $new_style ? ('', 'http2 on;') : ('http2', '');

sub version_num {
    my @p = split /\./, shift;
    return $p[0] * 1_000_000 + $p[1] * 1000 + $p[2];
}

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $port + 1;
my $origin = $port + 2;
# how long the slot holder keeps its slot: long enough for the checks made
# while it holds it, even on a slow machine
my $hold = AsyncNginx::slow() ? 6 : 3;

my $http = <<"EOF";
    log_format backend '\$uri \$status \$request_time';
    async_queue_zone zone=order:1m active=1 length=10 timeout=30s;
    async_queue_zone zone=park:1m active=1 length=3 timeout=30s;
    async_queue_zone zone=be:1m active=100 length=0;
    async_job_zone zone=jobs:1m ttl=60s active=4 length=10;
    server {
        listen 127.0.0.1:\$PORT $listen_h2;
        $http2_on

        location /order/ {
            async_queue order;
            echo_sleep 0.2;
            echo -n "\$uri";
        }
        location = /park/hold {
            async_queue park;
            echo_sleep $hold;
            echo -n hold;
        }
        location /park/ {
            async_queue park;
            echo_sleep 0.1;
            echo -n "\$uri";
        }

        location /up/ {
            proxy_pass http://127.0.0.1:$backend/be/;
        }
        location = /fan {
            async_fetch a /up/json/a?v=\$arg_v;
            async_fetch b /up/json/b?v=\$arg_v;
            async_fetch c /up/text/c;
        }
        location = /abort {
            async_fetch a /up/sleep/10?v=a;
            async_fetch b /up/sleep/10?v=b optional;
        }

        location = /jobs/submit {
            async_job jobs /job-run;
        }
        location = /job-run {
            internal;
            proxy_pass http://127.0.0.1:$backend/be/job;
        }
        location /jobs/status/ {
            async_job_status jobs;
        }
    }
    server {
        listen 127.0.0.1:$backend;
        access_log logs/backend.log backend;
        # over HTTP/1.1: nginx < 1.25.1 speaks only HTTP/2 on an h2c port
        location = /status { async_status; }
        location /be/json/ {
            default_type application/json;
            return 200 '{"v":"\$arg_v\$uri"}';
        }
        location /be/text/ {
            default_type text/plain;
            return 200 "text \$uri";
        }
        location /be/sleep/ {
            # the module's own queue counts the calls that reached the
            # backend: the test waits for that state before resetting
            async_queue be;
            proxy_pass http://127.0.0.1:$origin/;
        }
        location = /be/job {
            echo_sleep 0.5;
            echo -n "job result \$request_method";
        }
    }
    server {
        listen 127.0.0.1:$origin;
        access_log off;
        location / {
            echo_sleep 10;
            echo -n "\$arg_v";
        }
    }
EOF

my $ng = AsyncNginx->new(name => 'http2', workers => 2, http => $http);
$ng->start;

sub status_json {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $backend, Timeout => 5) or return {};
    print $s "GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $r = AsyncNginx::parse_response(<$s> // '');
    return $r->{status} == 200 ? decode_json($r->{body}) : {};
}

sub zone { status_json()->{queue_zones}{ $_[0] } // {} }

# Polls the status until COND holds for it (bounded: 10 s).
sub wait_status {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    my $st;
    while (time < $deadline) {
        $st = status_json();
        return $st if $cond->($st);
        sleep 0.05;
    }
    return $st;
}

sub backend_lines {
    my ($uri_re, $n) = @_;
    my $deadline = time + 8;
    my @lines;
    while (time < $deadline) {
        @lines = grep { $_->[0] =~ $uri_re }
            map { [split ' '] } $ng->log_file('backend.log');
        last if @lines >= $n;
        sleep 0.05;
    }
    return @lines;
}

subtest 'streams of one connection are parked and admitted in order' => sub {
    my $h2 = H2Client->new($port);
    my @names = map { "s$_" } 1 .. 5;
    $h2->open_stream($_, 'GET', "/order/$_") for @names;
    my @ends = map { $h2->wait_end($_, 15) } @names;
    is(scalar(grep { defined } @ends), 5, 'every stream answered');
    is_deeply([map { $_ && $_->{status} } @ends], [(200) x 5], 'all 200');
    is_deeply([map { $_ && $_->{body} } @ends], [map { "/order/$_" } @names],
        'each stream got its own answer');
    is_deeply([map { $_ && $_->{seq} } @ends], [1 .. 5],
        'answered in the order the streams arrived');
    my $z = zone('order');
    is($z->{passed} + $z->{queued}, 5, 'five went through the zone');
    ok($z->{queued} >= 3, "at least three waited ($z->{queued})");
    $h2->close;
};

subtest 'RST_STREAM of a parked stream frees its place at once' => sub {
    my $h2 = H2Client->new($port);
    $h2->open_stream('a', 'GET', '/park/hold');
    my $st = wait_status(sub { ($_[0]{queue_zones}{park}{active} // -1) == 1 });
    is($st->{queue_zones}{park}{active}, 1, 'the holder has the slot');
    $h2->open_stream($_, 'GET', "/park/$_") for qw(b c d);
    $st = wait_status(sub { ($_[0]{queue_zones}{park}{waiting} // -1) == 3 });
    is($st->{queue_zones}{park}{waiting}, 3, 'three streams parked: full');

    $h2->open_stream('e', 'GET', '/park/e');
    my $e = $h2->wait_end('e', 10);
    is($e && $e->{status}, 503, 'a fourth is rejected while the queue is full');

    $h2->reset_stream('c');
    $st = wait_status(sub { ($_[0]{queue_zones}{park}{cancelled} // -1) == 1
        && ($_[0]{queue_zones}{park}{waiting} // -1) == 2 });
    is($st->{queue_zones}{park}{cancelled}, 1, 'the reset stream counts as cancelled');
    is($st->{queue_zones}{park}{waiting}, 2, 'and left its place');
    # nobody was admitted yet: the reset freed the place, not the queue
    # moving on
    is($st->{queue_zones}{park}{queued}, 0, 'while the holder still holds the slot');

    $h2->open_stream('f', 'GET', '/park/f');
    $st = wait_status(sub { ($_[0]{queue_zones}{park}{waiting} // -1) == 3 });
    is($st->{queue_zones}{park}{waiting}, 3, 'a new stream takes the freed place');
    is($st->{queue_zones}{park}{queued}, 0, 'before the holder has finished');

    my @ends = map { $h2->wait_end($_, 20) } qw(a b d f);
    is_deeply([map { $_ && $_->{status} } @ends], [200, 200, 200, 200],
        'holder and parked streams answered 200');
    is_deeply([map { $_ && $_->{body} } @ends],
        ['hold', '/park/b', '/park/d', '/park/f'], 'each its own body');
    my @seq = map { $_ && $_->{seq} } @ends;
    is_deeply([sort { $a <=> $b } @seq], \@seq, 'in arrival order');
    ok(!$h2->{ended}{c}, 'the reset stream got no answer');
    my $z = zone('park');
    is($z->{rejected}, 1, 'one rejected');
    is($z->{cancelled}, 1, 'one cancelled');
    is($z->{waiting}, 0, 'nothing left waiting');
    is($z->{active}, 0, 'no slot left taken');
    $h2->close;
};

subtest 'a fan-out over HTTP/2 answers correctly' => sub {
    my $h2 = H2Client->new($port);
    $h2->open_stream("f$_", 'GET', "/fan?v=$_") for 1 .. 3;
    for my $i (1 .. 3) {
        my $r = $h2->wait_end("f$i", 10);
        is($r && $r->{status}, 200, "stream f$i: 200");
        my $json = eval { decode_json($r->{body}) } // {};
        is_deeply($json, { a => { v => "$i/be/json/a" },
                           b => { v => "$i/be/json/b" },
                           c => 'text /be/text/c' },
            "stream f$i: the three answers, aggregated")
            or diag $r && $r->{body};
        is($r && $r->{headers}{'x-async-completed'}, 'true',
            "stream f$i: X-Async-Completed");
    }
    $h2->close;
};

subtest 'resetting a fan-out stream cancels its calls' => sub {
    truncate_log('backend.log');
    my $h2 = H2Client->new($port);
    $h2->open_stream('x', 'GET', '/abort');
    my $st = wait_status(sub { ($_[0]{queue_zones}{be}{active} // -1) == 2 });
    is($st->{queue_zones}{be}{active}, 2, 'both calls reached the backend');
    my $t0 = time;
    $h2->reset_stream('x');
    my @lines = backend_lines(qr{^/be/sleep/10$}, 2);
    is(scalar @lines, 2, 'the backend saw both calls end')
        or diag explain [ $ng->log_file('backend.log') ];
    is($_->[1], 499, 'the backend logged the client going away') for @lines;
    ok($_->[2] < 9, "cut off before the origin answered ($_->[2] s)")
        for @lines;
    $st = wait_status(sub { ($_[0]{queue_zones}{be}{active} // -1) == 0 });
    is($st->{queue_zones}{be}{active}, 0, 'the backend slots are free');
    ok(!$h2->{ended}{x}, 'the reset stream got no answer');
    $h2->close;
};

subtest 'job submit, long-poll and result over one HTTP/2 connection' => sub {
    my $h2 = H2Client->new($port);
    $h2->open_stream('submit', 'POST', '/jobs/submit', 'payload');
    my $sub = $h2->wait_end('submit', 10);
    is($sub && $sub->{status}, 202, '202 Accepted');
    my $id = eval { decode_json($sub->{body})->{id} } // '';
    like($id, qr/^[A-Za-z0-9_-]{22}$/, 'a job id');
    is($sub && $sub->{headers}{location}, "/jobs/status/$id", 'Location');

    $h2->open_stream('poll', 'GET', "/jobs/status/$id?wait=20");
    # another stream of the same connection is answered while the
    # long-poll is parked
    $h2->open_stream('fan', 'GET', '/fan?v=9');
    my $fan = $h2->wait_end('fan', 10);
    is($fan && $fan->{status}, 200, 'another stream answered meanwhile');
    my $poll = $h2->wait_end('poll', 20);
    is($poll && $poll->{status}, 200, 'long-poll answered');
    my $json = eval { decode_json($poll->{body}) } // {};
    is($json->{status}, 'completed', 'the long-poll saw it complete');
    ok($fan && $poll && $fan->{seq} < $poll->{seq},
        'the long-poll was answered after the other stream');

    $h2->open_stream('result', 'GET', "/jobs/status/$id/result");
    my $res = $h2->wait_end('result', 10);
    is($res && $res->{status}, 200, 'result 200');
    is($res && $res->{body}, 'job result POST', 'the stored body');
    $h2->close;
};

subtest 'h2load: an overload burst over HTTP/2 is served or rejected' => sub {
    plan skip_all => 'h2load is not installed'
        if system('command -v h2load >/dev/null') != 0;
    my $out = `h2load -n 40 -c 2 -m 20 http://127.0.0.1:$port/park/x 2>&1`;
    my ($s2, $s5) = $out =~ /status codes: (\d+) 2xx, \d+ 3xx, \d+ 4xx, (\d+) 5xx/;
    ok(defined $s2, 'h2load ran') or diag $out;
    is(($s2 // 0) + ($s5 // 0), 40, 'every request answered 2xx or 5xx');
    ok(($s2 // 0) >= 1, "some served ($s2)");
    ok(($s5 // 0) >= 1, "some rejected ($s5): the queue holds only 3");
    my $z = wait_status(sub { ($_[0]{queue_zones}{park}{active} // -1) == 0 })
        ->{queue_zones}{park};
    is($z->{waiting}, 0, 'nothing left waiting');
};

sub truncate_log {
    open my $fh, '>', $ng->root . "/logs/$_[0]" or die $!;
    close $fh;
}

my @errors = grep { /\[error\]/ } split /\n/, $ng->error_log;
is(scalar @errors, 0, 'no [error] in the error log') or diag explain \@errors;
is(scalar($ng->crash_lines), 0, 'no alert or crash')
    or diag join "\n", $ng->crash_lines;
$ng->stop;

done_testing;
