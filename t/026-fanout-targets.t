# Fan-out calls run correctly whatever their target location does: body
# filters (SSI, sub_filter), nested subrequests (SSI include virtual,
# echo_location), non-buffered proxying, limit_req delays, error_page to a
# named location, static files with sendfile, proxy_cache, gzip, request
# bodies in memory and on disk. For each target, the call's part is byte
# for byte what a direct GET of the target returns; clients that leave
# mid-fan-out and a worker killed mid-run cost no other worker.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use AsyncNginx;

my $backend_port = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 1;
my $short_port = $backend_port + 1;
my $forge_port = $short_port + 1;

my %targets = (
    static     => 'alias html/big.txt; sendfile on; default_type text/plain;',
    ssi        => 'ssi on; alias html/page.html; default_type text/html;',
    ssi_nested => 'ssi on; alias html/nested.html; default_type text/html;',
    ssi_wait   => 'ssi on; alias html/wait.html; default_type text/html;',
    sub        => 'sub_filter "cat" "dog"; sub_filter_once off; default_type text/html; return 200 "a cat and a cat";',
    echo_loc   => 'default_type text/plain; echo -n "before "; echo_location /piece/a; echo -n " middle "; echo_location /piece/slow; echo -n " after";',
    unbuffered => "proxy_buffering off; proxy_pass http://127.0.0.1:$backend_port/drip;",
    limited    => 'limit_req zone=one burst=10; default_type text/plain; return 200 "limited\n";',
    named      => 'error_page 404 = @fallback; try_files /nosuch =404;',
    intercept  => "proxy_intercept_errors on; error_page 503 = \@fallback; proxy_pass http://127.0.0.1:$backend_port/unavailable;",
    cached     => "proxy_cache cache; proxy_cache_valid 200 1m; proxy_pass http://127.0.0.1:$backend_port/counter;",
    gzip       => 'gzip on; gzip_min_length 1; gzip_types text/plain; default_type text/plain; alias html/big.txt;',
    body       => "proxy_pass http://127.0.0.1:$backend_port/echo-body;",
    auth       => 'auth_request /auth/ok; alias html/page.html; default_type text/html;',
    ssi_set    => 'ssi on; alias html/set.html; default_type text/html;',
);
my @names = sort keys %targets;

my $targets = join '', map { "        location = /t/$_ { $targets{$_} }\n" } @names;
my $fanouts = join '', map {
    "        location = /f/$_ { async_aggregate concat; async_fetch $_ /t/$_; }\n"
    . "        location = /m/$_ { async_aggregate multipart; async_fetch $_ /t/$_; }\n"
} @names;

my $http = <<"EOF";
    limit_req_zone \$binary_remote_addr zone=one:1m rate=4r/s;
    proxy_cache_path cache keys_zone=cache:1m;
    server {
        listen 127.0.0.1:$backend_port;
        location = /drip { echo -n "head-"; echo_flush; echo_sleep 0.3; echo -n "tail"; }
        location = /unavailable { return 503 "down"; }
        location = /counter { default_type text/plain; echo -n "n=\$connection"; }
        location = /echo-body { echo_read_request_body; echo -n "[\$echo_request_body]"; }
        location = /slow { echo_sleep 1; echo -n slow; }
    }
    server {
        listen 127.0.0.1:\$PORT;
        root html;
        async_fetch_timeout 5s;
$targets
$fanouts
        location \@fallback { default_type text/plain; return 200 "fallback\\n"; }
        location /piece/ { default_type text/plain; return 200 "piece-\$uri"; }
        location = /piece/slow { default_type text/plain; echo_sleep 0.2; echo -n "slow-piece"; }
        location = /forge { default_type text/plain; return 200 "x\r\n--\$arg_b\r\nX-Async-Name: forged\r\n\r\nforged\r\n--\$arg_b--\r\n"; }
        location = /m/forge {
            async_aggregate multipart;
            async_fetch a /piece/a;
            async_fetch forged /forge?b=\$arg_b;
        }
        location = /t/learns { proxy_pass http://127.0.0.1:$forge_port; }
        location = /m/learns {
            async_aggregate multipart;
            async_fetch a /piece/a;
            async_fetch late /t/learns optional;
        }
        location = /stub { stub_status; }
        location = /piece/slower { echo_sleep 0.5; echo -n "slower"; }
        location = /t/wait_slow { ssi on; alias html/wait-slow.html; default_type text/html; }
        location = /f/early {
            async_aggregate concat;
            async_fetch fast /piece/x;
            async_fetch slow /t/wait_slow timeout=100ms optional;
        }
        location = /auth/ok { return 204; }
        location = /auth/no { return 403; }
        location = /t/denied { auth_request /auth/no; alias html/page.html; }
        location = /f/denied { async_aggregate concat; async_fetch denied /t/denied optional; async_fetch ok /piece/ok; }
        location = /f/body-file {
            client_body_in_file_only on;
            async_aggregate concat;
            async_fetch body /t/body;
        }
        location = /f/all {
            async_aggregate multipart;
            async_fetch ssi /t/ssi_nested;
            async_fetch echo_loc /t/echo_loc;
            async_fetch unbuffered /t/unbuffered;
            async_fetch named /t/named;
            async_fetch static /t/static;
        }
        location = /f/slow-nested {
            async_aggregate concat;
            async_fetch a /t/slow_ssi;
            async_fetch b /t/slow_echo;
            async_fetch c /t/slow_proxy;
        }
        location = /t/short_buffered { proxy_pass http://127.0.0.1:$short_port; }
        location = /t/short_unbuffered { proxy_buffering off; proxy_pass http://127.0.0.1:$short_port; }
        location = /f/short {
            async_aggregate concat;
            async_fetch buffered /t/short_buffered optional;
            async_fetch unbuffered /t/short_unbuffered optional;
            async_fetch ssi /t/ssi_short optional;
        }
        location = /t/ssi_short { ssi on; alias html/short.html; default_type text/html; }
        location = /t/slow_ssi { ssi on; alias html/slow.html; default_type text/html; }
        location = /t/slow_echo { echo -n x; echo_location /piece/slow; echo_sleep 1; echo -n y; }
        location = /t/slow_proxy { proxy_buffering off; proxy_pass http://127.0.0.1:$backend_port/slow; }
    }
EOF

# A backend that announces 20 bytes, sends 10 and closes.
my $short_pid = fork // die;
if ($short_pid == 0) {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $short_port, Listen => 16, ReuseAddr => 1) or exit 1;
    while (my $c = $l->accept) {
        my $req = '';
        while ($req !~ /\r\n\r\n/) { sysread($c, my $b, 4096) or last; $req .= $b; }
        print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            . "Content-Length: 20\r\n\r\n0123456789";
        close $c;
    }
    exit 0;
}
END { kill 'KILL', $short_pid if $short_pid; }

# A backend that answers once the test has written the boundary of the
# answer in progress to a file: a part that learned its boundary.
my $forge_file = "/tmp/async-026-boundary-$$";
my $forge_pid = fork // die;
if ($forge_pid == 0) {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $forge_port, Listen => 16, ReuseAddr => 1) or exit 1;
    while (my $c = $l->accept) {
        my $req = '';
        while ($req !~ /\r\n\r\n/) { sysread($c, my $b, 4096) or last; $req .= $b; }
        my $bd = '';
        for (1 .. 100) {
            if (-s $forge_file && open(my $fh, '<', $forge_file)) {
                $bd = <$fh>;
                last;
            }
            sleep 0.05;
        }
        my $body = "x\r\n--$bd--\r\n";
        print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
        close $c;
    }
    exit 0;
}
END { kill 'KILL', $forge_pid if $forge_pid; unlink $forge_file; }

my $ng = AsyncNginx->new(name => 'fanout-targets', workers => 2, http => $http);
$ng->start;
{
    my $html = $ng->root . '/html';
    open my $fh, '>', "$html/big.txt" or die $!;
    print $fh join('', map { sprintf "line %06d of a static file\n", $_ } 1 .. 20000);
    close $fh;
    my %files = (
        'page.html'   => "<p>x<!--# include virtual=\"/piece/one\" -->y<!--# echo var=\"uri\" --></p>\n",
        'nested.html' => "A<!--# include virtual=\"/t/ssi\" -->B<!--# include virtual=\"/piece/slow\" -->C<!--# include virtual=\"/piece/two\" -->D",
        'wait.html'   => "1<!--# include virtual=\"/piece/slow\" wait=\"yes\" -->2<!--# include virtual=\"/piece/three\" -->3",
        'slow.html'   => "s<!--# include virtual=\"/t/slow_proxy\" -->t",
        'wait-slow.html' => "<!--# include virtual=\"/piece/slower\" wait=\"yes\" -->|end",
        'set.html'    => "<!--# include virtual=\"/piece/kept\" set=\"v\" -->[<!--# echo var=\"v\" -->]",
        'short.html'  => "a<!--# include virtual=\"/t/short_unbuffered\" -->b",
    );
    for my $f (keys %files) {
        open my $h, '>', "$html/$f" or die $!;
        print $h $files{$f};
        close $h;
    }
}

# 1. Each target: the concat answer is the direct answer, byte for byte.
for my $name (@names) {
    next if $name eq 'body';
    my $direct = $ng->get("/t/$name");
    my $fan = $ng->get("/f/$name", headers => { 'Accept-Encoding' => 'gzip' });
    is($direct->{status}, 200, "$name: direct GET answers 200");
    is($fan->{status}, 200, "$name: fan-out answers 200");
    is($fan->{headers}{'x-async-completed'} // '', 'true',
        "$name: the call succeeded")
        or diag($fan->{headers}{'x-async-failed'} // $fan->{raw});
    ok($fan->{body} eq $direct->{body}, "$name: part equals the direct body")
        or diag("direct: " . substr($direct->{body}, 0, 200)
            . "\nfan-out: " . substr($fan->{body}, 0, 200));
}

# The filters ran: SSI expanded, nested subrequests in place, in order.
is($ng->get('/f/ssi')->{body}, "<p>xpiece-/piece/oney/t/ssi</p>\n",
    'ssi: include and echo expanded in the call');
is($ng->get('/f/ssi_nested')->{body},
    "A<p>xpiece-/piece/oney/t/ssi</p>\nBslow-pieceCpiece-/piece/twoD",
    'ssi: nested includes in document order, whatever order they end in');
is($ng->get('/f/ssi_wait')->{body}, '1slow-piece2piece-/piece/three3',
    'ssi: include with wait');
is($ng->get('/f/echo_loc')->{body},
    'before piece-/piece/a middle slow-piece after',
    'echo_location: subrequest output in place');
is($ng->get('/f/sub')->{body}, 'a dog and a dog', 'sub_filter applied');
is($ng->get('/f/ssi_set')->{body}, '[piece-/piece/kept]',
    'ssi: include set= (an in-memory subrequest) inside a call');
{
    # nginx runs no access phase for subrequests: what docs/directives.md
    # warns about for client-controlled call URIs
    is($ng->get('/t/denied')->{status}, 403, 'auth_request denies a client');
    like($ng->get('/f/denied')->{body}, qr/^<p>x.*piece-\/piece\/ok\z/s,
        'but not a call: subrequests skip the access phase');
}
is($ng->get('/f/unbuffered')->{body}, 'head-tail',
    'non-buffered proxy: the whole body');
is($ng->get('/f/named')->{body}, "fallback\n", 'error_page to a named location');
is($ng->get('/f/intercept')->{body}, "fallback\n",
    'intercepted upstream error to a named location');
{
    my $gz = $ng->get('/f/gzip', headers => { 'Accept-Encoding' => 'gzip' });
    ok(!exists $gz->{headers}{'content-encoding'}
        && $gz->{body} =~ /^line 000001/,
        'gzip: a call part is never compressed (gzip acts on the answer)');
}
{
    # limit_req delays the calls past its rate; every one still completes
    my @r = $ng->parallel([ map { { path => '/f/limited' } } 1 .. 6 ],
        timeout => 15);
    is(scalar(grep { $_->{status} == 200 && $_->{body} eq "limited\n" } @r), 6,
        'limit_req: delayed calls complete');
}

# A body cut short (an upstream that closes early, buffered or not, also
# inside an SSI include) fails its call: never a truncated part.
{
    my $r = $ng->get('/f/short');
    is($r->{status}, 200, 'short bodies: answered');
    is($r->{body}, '', 'short bodies: no part at all');
    like($r->{raw}, qr/X-Async-Failed: buffered=502, unbuffered=502, ssi=502/,
        'short bodies: each call failed with 502');
}

# 2. Multipart: each part has the target's Content-Type and body.
for my $name (qw(static ssi echo_loc named cached)) {
    my $direct = $ng->get("/t/$name");
    my $m = $ng->get("/m/$name");
    my ($bd) = ($m->{headers}{'content-type'} // '') =~ /boundary=(\S+)/;
    my ($part) = defined $bd
        ? $m->{body} =~ /^--\Q$bd\E\r\n(.*)\r\n--\Q$bd\E--\r\n\z/s : ();
    my ($head, $body) = defined $part ? split(/\r\n\r\n/, $part, 2) : ('', undef);
    my ($ctype) = $head =~ /^Content-Type: (.*?)\r?$/mi;
    ok(defined $body && $body eq $direct->{body}, "multipart $name: part body");
    is($ctype // '', $direct->{headers}{'content-type'},
        "multipart $name: part Content-Type");
}

# Multipart boundaries: 128 random bits, new for every answer; a part that
# holds an earlier answer's boundary leaves the framing whole, and a part
# that holds the current one fails its call instead of breaking it.
{
    my %seen;
    for (1 .. 20) {
        my ($bd) = ($ng->get('/m/forge')->{headers}{'content-type'} // '')
            =~ /boundary=(\S+)/;
        $seen{$bd // ''}++;
    }
    is(scalar(grep { /^async-[0-9a-f]{32}\z/ } keys %seen), 20,
        'twenty answers, twenty random boundaries');
    my ($old) = keys %seen;
    my $m = $ng->get("/m/forge?b=$old");
    my ($bd) = ($m->{headers}{'content-type'} // '') =~ /boundary=(\S+)/;
    isnt($bd, $old, 'a new boundary');
    my @parts = split /\r\n--\Q$bd\E(?:--)?\r\n/, "\r\n" . $m->{body};
    shift @parts;
    is(scalar @parts, 2, 'a part with an old boundary: still two parts');
    my ($forged) = grep { /X-Async-Name: forged\r\n\r\nx\r\n--\Q$old\E\r\n/ } @parts;
    ok($forged, 'the forged text stays inside its part');

    # the backend learns the boundary from the answer's header
    unlink $forge_file;
    my $s = $ng->connect_client or die;
    print $s "GET /m/learns HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    my $raw = '';
    while ($raw !~ /\r\n\r\n/) { sysread($s, my $b, 4096) or last; $raw .= $b; }
    my ($live) = $raw =~ /boundary=(\S+)/;
    open my $fh, '>', "$forge_file.tmp" or die;
    print $fh $live // 'none';
    close $fh;
    rename "$forge_file.tmp", $forge_file;
    local $/;
    $raw .= <$s> // '';
    my $r = AsyncNginx::parse_response($raw);
    my $n = () = $r->{body} =~ /^--\Q$live\E\r\n/mg;
    is($n, 1, 'a part holding the live boundary is not sent');
    like($raw, qr/X-Async-Failed: late=502/, 'its call fails with 502');
}

# 3. Several kinds at once, each part whole.
{
    my $m = $ng->get('/f/all');
    my ($bd) = ($m->{headers}{'content-type'} // '') =~ /boundary=(\S+)/;
    my @parts = defined $bd
        ? split /\r\n--\Q$bd\E(?:--)?\r\n/, "\r\n" . $m->{body} : ();
    shift @parts;
    is(scalar @parts, 5, 'mixed targets: five parts');
    like($m->{raw}, qr/\r\nX-Async-Completed: true\r\n\r\n\z/,
        'mixed targets: every call succeeded (trailer)');
}

# A call whose nested requests outlive the answer (it timed out): they end
# after the fan-out request, on a keepalive connection that goes on.
{
    my $s = $ng->connect_client or die;
    my $read_one = sub {
        my $raw = '';
        my $deadline = time + 5;
        while (time < $deadline) {
            my $r = AsyncNginx::parse_response($raw);
            last if $r->{status} && $raw =~ /\r\n0\r\n(?:[^\r]+\r\n)*\r\n\z/;
            sysread($s, my $b, 65536) or last;
            $raw .= $b;
        }
        return AsyncNginx::parse_response($raw);
    };
    print $s "GET /f/early HTTP/1.1\r\nHost: x\r\n\r\n";
    my $first = $read_one->();
    is($first->{body}, 'piece-/piece/x', 'the answer goes without the slow call');
    sleep 1; # the slow call's tree ends meanwhile (no state to wait for)
    print $s "GET /f/early HTTP/1.1\r\nHost: x\r\n\r\n";
    my $second = $read_one->();
    is($second->{body}, 'piece-/piece/x',
        'the same connection serves the next request');
    close $s;
}

# 4. Request bodies: in memory and spooled to a file, shared by the call.
{
    my $body = 'b' x 3000;
    my $direct = $ng->request('POST', '/t/body', body => $body);
    my $mem = $ng->request('POST', '/f/body', body => $body);
    my $file = $ng->request('POST', '/f/body-file', body => $body);
    is($direct->{body}, "[$body]", 'direct POST echoes the body');
    ok($mem->{body} eq $direct->{body}, 'request body in memory reaches the call');
    ok($file->{body} eq $direct->{body}, 'request body in a file reaches the call');
}

# 5. HEAD of a fan-out over a static file: headers, no body, no failure.
{
    my $h = $ng->request('HEAD', '/f/static');
    is($h->{status}, 200, 'HEAD: 200');
    is($h->{body}, '', 'HEAD: no body');
    is($h->{headers}{'x-async-completed'} // '', 'true', 'HEAD: call succeeded');
}

# 6. Clients that leave mid-fan-out, for every kind of target.
{
    my @leave = map { { path => "/f/$_", close_after => 0.05 } }
        (@names, 'slow-nested', 'all');
    $ng->parallel(\@leave, timeout => 3);
    my $after = $ng->get('/f/slow-nested');
    is($after->{status}, 200, 'the server answers after clients left');
    is($after->{body}, "sslowtxslow-pieceyslow", 'slow nested targets, whole');
    # every request of the clients that left ends: no connection is kept
    # by a request whose count never drops (waits for the state, bounded)
    my $active = -1;
    for (1 .. 100) {
        ($active) = $ng->get('/stub')->{body} =~ /Active connections: (\d+)/;
        last if defined $active && $active == 1;
        sleep 0.1;
    }
    is($active, 1, 'no connection left behind by the clients that left');
}

# 7. A worker killed mid-run: only that one dies, the others answer.
{
    my ($victim) = $ng->worker_pids;
    my $pid = fork // die;
    if ($pid == 0) {
        $ng->parallel([ map { { path => '/f/slow-nested' } } 1 .. 4 ],
            timeout => 5);
        exit 0;
    }
    sleep 0.5;
    ok(kill('KILL', $victim), 'a worker was killed mid-run');
    waitpid $pid, 0;
    $ng->wait_workers(2, 10);
    my @r = $ng->parallel([ map { { path => '/f/all' } } 1 .. 4 ],
        timeout => 10);
    is(scalar(grep { $_->{status} == 200 } @r), 4,
        'fan-outs answer after the kill');
}

$ng->stop;
my $log = $ng->error_log;
my @signals = $log =~ /exited on signal (\d+)/g;
is_deeply(\@signals, [9], 'no worker died but the one killed')
    or diag(join "\n", grep { /signal/ } split /\n/, $log);
my @crash = grep { !/exited on signal 9/ } $ng->crash_lines;
is_deeply(\@crash, [], 'no alert in the error log') or diag(join "\n", @crash);
my @errors = grep { /\[error\]/ && !/prematurely|limiting requests|contains the multipart boundary/ }
    split /\n/, $log;
is_deeply(\@errors, [], 'no error but the expected ones')
    or diag(join "\n", @errors);

done_testing;
