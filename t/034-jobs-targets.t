# A job runs whatever its target location does. Each target of the matrix
# is built from modules real sites use (non-buffered proxying with
# send_timeout, limit_req delays, nested subrequests, SSI, sub_filter,
# addition, gzip, static files with sendfile, error_page to a named
# location, proxy_cache, return, a request body spooled to disk); the job's
# stored result (status, Content-Type, body) must equal, byte for byte, what
# a direct request of the same method to that target returns. Then, per
# kind of target: clients that leave right after submitting, and a worker
# killed mid-run; a HEAD job; bodies that end before their Content-Length.
# The backend is a forking Perl server on $PORT+2.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Digest::MD5 qw(md5_hex);
use AsyncNginx;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $be = $port + 2;

# --- the backend ------------------------------------------------------------

sub backend_reply {
    my ($c) = @_;
    my $head = '';
    while ($head !~ /\r\n\r\n/) {
        my $n = sysread $c, my $buf, 4096;
        return unless $n;
        $head .= $buf;
    }
    my ($req, $body) = split /\r\n\r\n/, $head, 2;
    my ($method, $path) = $req =~ m{^(\S+) (\S+)};
    my ($len) = $req =~ /^Content-Length:\s*(\d+)/mi;
    $len //= 0;
    while (length $body < $len) {
        my $n = sysread $c, my $buf, 65536;
        last unless $n;
        $body .= $buf;
    }
    my $h = "HTTP/1.1 200 OK\r\nConnection: close\r\n";
    if ($path =~ m{^/plain}) {
        my $b = "plain answer for $path\n";
        print $c $h . "Content-Type: text/plain\r\nContent-Length: "
            . length($b) . "\r\n\r\n$b";
    } elsif ($path =~ m{^/slowbody}) {
        # the headers now, the body 1.5 s later
        print $c $h . "Content-Type: text/x-slow\r\nContent-Length: 20\r\n\r\n";
        sleep 1.5;
        print $c "0123456789abcdefghij";
    } elsif ($path =~ m{^/trunc}) {
        # announces 20 bytes, sends 10, closes
        print $c $h . "Content-Type: text/x-trunc\r\nContent-Length: 20\r\n\r\n";
        print $c "0123456789";
    } elsif ($path =~ m{^/sum}) {
        my $b = md5_hex($body) . ' ' . length($body) . "\n";
        print $c $h . "Content-Type: text/plain\r\nContent-Length: "
            . length($b) . "\r\n\r\n$b";
    } elsif ($path =~ m{^/echoslow}) {
        sleep 1.5;
        print $c $h . "Content-Type: application/x-echo\r\nContent-Length: "
            . length($body) . "\r\n\r\n$body";
    } elsif ($path =~ m{^/echo}) {
        print $c $h . "Content-Type: application/x-echo\r\nContent-Length: "
            . length($body) . "\r\n\r\n$body";
    } else {
        print $c "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    }
}

my $backend_pid = fork // die "fork: $!";
if ($backend_pid == 0) {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $be,
        Listen => 64, ReuseAddr => 1) or die "listen $be: $!";
    $SIG{CHLD} = 'IGNORE';
    my $until = time + 600;
    while (time < $until) {
        my $c = $l->accept or next;
        my $pid = fork;
        if (defined $pid && $pid == 0) {
            $c->autoflush(1);
            backend_reply($c);
            close $c;
            POSIX::_exit(0);
        }
        close $c;
    }
    POSIX::_exit(0);
}
END { kill 'KILL', $backend_pid if $backend_pid; }

# --- nginx ------------------------------------------------------------------

my $http = <<"EOF";
    async_job_zone zone=jobs:4m active=16 length=64 max_result=1m;
    async_job_zone zone=held:1m active=1 length=20;
    limit_req_zone \$host zone=lr:1m rate=2r/s;
    proxy_cache_path tmp/cache keys_zone=pc:1m;
    log_format hook escape=none '\$arg_id \$request_body';
    server {
        listen 127.0.0.1:\$PORT;
        client_body_buffer_size 1k;
        client_max_body_size 10m;
        root html;
        default_type text/plain;

        location ~ ^/job/t(/.*)\$ {
            async_job jobs /t\$1;
            add_header X-Pid \$pid always;
        }
        location /job-internal { async_job jobs /hidden; }
        location /job-callback {
            async_job jobs /t/nested;
            async_job_callback /hook?id=\$async_job_id;
        }
        location /hook {
            internal;
            echo_read_request_body;
            echo_location /t/inner;
            access_log logs/hook.log hook;
        }
        location /hidden { internal; echo "internal ok"; }
        location /jobs/ { async_job_status jobs; }
        location /held/hold { async_job held /t/sleep30; }
        location /held/sum { async_job held /t/uploadsum; }
        location /held/jobs/ { async_job_status held; }
        location /t/sleep30 { echo_sleep 30; echo "slept"; }
        location /t/uploadsum { proxy_pass http://127.0.0.1:$be/sum; }
        location /t/uploadslow { proxy_pass http://127.0.0.1:$be/echoslow; }
        location = /status { async_status; }

        location /t/proxy { proxy_pass http://127.0.0.1:$be/plain; }
        location /t/proxyslow { proxy_pass http://127.0.0.1:$be/slowbody; }
        location /t/nobuf {
            proxy_buffering off;
            send_timeout 1s;
            proxy_pass http://127.0.0.1:$be/slowbody;
        }
        location /t/trunc { proxy_pass http://127.0.0.1:$be/trunc; }
        location /t/truncnobuf {
            proxy_buffering off;
            proxy_pass http://127.0.0.1:$be/trunc;
        }
        location /t/limited { limit_req zone=lr burst=10; echo "limited"; }
        location /t/nested { echo "before"; echo_location /t/inner; echo "after"; }
        location /t/nestedslow { echo_location /t/sleepy; echo "after"; }
        location /t/inner { echo "inner inner"; }
        location /t/sleepy { echo_sleep 2; echo "slept"; }
        location ~ ^/t/ssi { ssi on; default_type text/html; }
        location /t/sub {
            sub_filter inner OUTER;
            sub_filter_once off;
            sub_filter_types *;
            echo_location /t/inner;
        }
        location /t/add {
            addition_types *;
            add_before_body /t/inner;
            add_after_body /t/inner;
            echo "middle";
        }
        location /t/gzip {
            gzip on;
            gzip_min_length 1;
            gzip_types *;
        }
        location /t/static { sendfile on; types { } default_type application/x-blob; }
        location /t/errpage { error_page 404 = \@fallback; return 404; }
        location \@fallback { echo "fallback for \$uri"; }
        location /t/cached {
            proxy_cache pc;
            proxy_cache_valid 200 1m;
            proxy_pass http://127.0.0.1:$be/plain;
        }
        location /t/ret { return 200 "returned \$request_method\\n"; }
        location /t/upload { proxy_pass http://127.0.0.1:$be/echo; }
    }
EOF

my $ng = AsyncNginx->new(name => 'jobs-targets', workers => 2, http => $http);
$ng->start;
my $html = $ng->root . '/html/t';
mkdir $html;
sub put {
    my ($name, $content) = @_;
    open my $fh, '>:raw', "$html/$name" or die $!;
    print $fh $content;
    close $fh;
}
put('ssi.html', qq{<p>top</p>\n<!--# include virtual="/t/inner" -->\n<p>bottom</p>\n});
put('ssislow.html', qq{<p>top</p>\n<!--# include virtual="/t/sleepy" -->\n});
put('gzip.txt', join('', map { "line $_ of a compressible text\n" } 1 .. 2000));
put('static.bin', join('', map { chr(($_ * 31 + 7) % 256) } 0 .. 150000));
my $upload = join('', map { chr(($_ * 13 + 5) % 256) } 0 .. 300000);

sub job_of {
    my ($r) = @_;
    my ($id) = ($r->{headers}{location} // '') =~ m{/jobs/([A-Za-z0-9_-]+)};
    return $id;
}

sub submit {
    my ($method, $path, %opt) = @_;
    my $r = $ng->request($method, "/job$path", %opt);
    return (job_of($r), $r);
}

sub state_of {
    my ($id, $query) = @_;
    my $r = $ng->get("/jobs/$id" . ($query // ''));
    return eval { decode_json($r->{body}) } // { status => "http $r->{status}" };
}

# Waits for a final state (long-polls, bounded).
sub final {
    my ($id) = @_;
    my $st = {};
    for (1 .. 8 * AsyncNginx::wait_factor()) {
        $st = state_of($id, '?wait=5');
        return $st if $st->{status} =~ /^(completed|failed|cancelled)$/;
    }
    return $st;
}

sub wait_state {
    my ($id, $want) = @_;
    my $deadline = time + 10 * AsyncNginx::wait_factor();
    my $st = {};
    while (time < $deadline) {
        $st = state_of($id);
        return $st if $st->{status} eq $want;
        sleep 0.05;
    }
    return $st;
}

sub totals { return $ng->status->{job_zones}{jobs} }

sub wait_idle {
    my $deadline = time + 20 * AsyncNginx::wait_factor();
    my $z = {};
    while (time < $deadline) {
        $z = totals();
        return $z if $z->{queued} == 0 && $z->{running} == 0;
        sleep 0.1;
    }
    return $z;
}

my @matrix = (
    [ 'proxy_pass, buffered', 'GET', '/t/proxy' ],
    [ 'proxy_pass, buffered, body 1.5 s after the headers', 'GET', '/t/proxyslow' ],
    [ 'proxy_buffering off, send_timeout 1s, body 1.5 s after the headers',
      'GET', '/t/nobuf' ],
    [ 'limit_req with burst (delayed)', 'GET', '/t/limited', copies => 3 ],
    [ 'echo_location (nested subrequest)', 'GET', '/t/nested' ],
    [ 'SSI include virtual', 'GET', '/t/ssi.html' ],
    [ 'sub_filter over a subrequest', 'GET', '/t/sub' ],
    [ 'addition (before and after body)', 'GET', '/t/add' ],
    [ 'gzip, the request accepts it', 'GET', '/t/gzip.txt',
      headers => { 'Accept-Encoding' => 'gzip' } ],
    [ 'static file with sendfile', 'GET', '/t/static.bin' ],
    [ 'static file with sendfile, HEAD', 'HEAD', '/t/static.bin' ],
    [ 'error_page to a named location', 'GET', '/t/errpage' ],
    [ 'proxy_cache', 'GET', '/t/cached' ],
    [ 'return', 'GET', '/t/ret' ],
    [ 'request body spooled to disk, echoed by the backend', 'POST',
      '/t/upload', body => $upload ],
);

subtest 'every target: the job stores what a direct request gets' => sub {
    for my $case (@matrix) {
        my ($name, $method, $path, %opt) = @$case;
        my $copies = delete $opt{copies} // 1;
        my @ids = map { (submit($method, $path, %opt))[0] } 1 .. $copies;
        my $direct = $ng->request($method, $path, %opt, timeout => 15);
        is($direct->{status}, 200, "$name: the direct request answers 200");
        for my $id (@ids) {
            ok($id, "$name: submitted") or next;
            my $st = final($id);
            is($st->{status}, 'completed', "$name: completed")
                or diag explain $st;
            is($st->{result_status}, $direct->{status}, "$name: status");
            my $res = $ng->get("/jobs/$id/result");
            is($res->{status}, $direct->{status}, "$name: replayed status");
            is($res->{headers}{'content-type'},
                $direct->{headers}{'content-type'}, "$name: Content-Type");
            ok($res->{body} eq $direct->{body},
                "$name: body byte for byte (" . length($direct->{body})
                . " bytes)")
                or diag "job: " . substr($res->{body}, 0, 200)
                . "\ndirect: " . substr($direct->{body}, 0, 200);
        }
    }
    # the filters really ran on the job (not a raw copy of the source)
    my ($id) = submit('GET', '/t/ssi.html');
    final($id);
    my $ssi = $ng->get("/jobs/$id/result")->{body};
    like($ssi, qr/inner inner/, 'SSI: the include is in the result');
    unlike($ssi, qr/<!--#/, 'SSI: no directive left');
    ($id) = submit('GET', '/t/gzip.txt', headers => { 'Accept-Encoding' => 'gzip' });
    final($id);
    like($ng->get("/jobs/$id/result")->{body}, qr/^\x1f\x8b/, 'gzip: compressed');
    ($id) = submit('GET', '/t/gzip.txt');
    final($id);
    like($ng->get("/jobs/$id/result")->{body}, qr/^line 1 of/,
        'gzip: plain when the request does not accept it');
};

subtest 'a HEAD job completes with the status and an empty body' => sub {
    my ($id) = submit('HEAD', '/t/static.bin');
    my $st = final($id);
    is($st->{status}, 'completed', 'completed');
    is($st->{result_status}, 200, 'status 200');
    my $res = $ng->get("/jobs/$id/result");
    is($res->{body}, '', 'empty body');
    is($res->{headers}{'content-type'}, 'application/x-blob', 'Content-Type');
    ($id) = submit('HEAD', '/t/proxy');
    is(final($id)->{status}, 'completed', 'a proxied HEAD completes too');
};

subtest 'an internal target location runs' => sub {
    my $r = $ng->request('GET', '/job-internal');
    my $id = job_of($r);
    is(final($id)->{status}, 'completed', 'completed');
    is($ng->get("/jobs/$id/result")->{body}, "internal ok\n", 'its answer');
    is($ng->get('/hidden')->{status}, 404, 'still 404 from outside');
};

subtest 'a body that ends before its Content-Length fails the job' => sub {
    for my $path ('/t/trunc', '/t/truncnobuf') {
        my $direct = $ng->get($path);
        ok(length($direct->{body}) < 20, "$path: the direct answer is short too");
        my ($id) = submit('GET', $path);
        my $st = final($id);
        is($st->{status}, 'failed', "$path: failed, never completed");
        is($st->{reason}, 'truncated', "$path: reason truncated");
        is($ng->get("/jobs/$id/result")->{status}, 409, "$path: no result");
    }
    like($ng->error_log, qr/\[warn\].*the job failed \(truncated\)/, 'logged');
};

subtest 'clients that leave right after submitting: every job still ends' => sub {
    my $before = wait_idle();
    my @reqs;
    for my $case (@matrix) {
        my ($name, $method, $path, %opt) = @$case;
        delete $opt{copies};
        push @reqs, { method => $method, path => "/job$path", %opt,
                      close_after => 0 };
    }
    my @res = $ng->parallel(\@reqs, timeout => 10);
    my $after = wait_idle();
    is($after->{running} + $after->{queued}, 0, 'nothing left running');
    my $submitted = $after->{totals}{submitted} - $before->{totals}{submitted};
    ok($submitted > 0, "jobs were submitted ($submitted)");
    is($after->{totals}{completed} - $before->{totals}{completed}, $submitted,
        'every one completed');
    is($after->{totals}{failed} - $before->{totals}{failed}, 0, 'none failed');
};

subtest 'a worker killed mid-run: its job fails (worker_lost), the rest goes on' => sub {
    my $kills = 0;
    for my $path ('/t/proxyslow', '/t/nobuf', '/t/nestedslow', '/t/ssislow.html',
                  '/t/limited', '/t/uploadslow') {
        # limit_req delays only behind earlier requests: queue a few
        my @ids;
        my $pid;
        for (1 .. ($path eq '/t/limited' ? 4 : 1)) {
            my ($id, $r) = $path eq '/t/uploadslow'
                ? submit('POST', $path, body => $upload) : submit('GET', $path);
            push @ids, $id;
            $pid = $r->{headers}{'x-pid'};
        }
        my $id = $ids[-1];
        is(wait_state($id, 'running')->{status}, 'running', "$path: running");
        ok($pid && kill('KILL', $pid), "$path: worker $pid killed");
        $kills++;
        my $st = final($id);
        is($st->{status}, 'failed', "$path: failed");
        is($st->{reason}, 'worker_lost', "$path: worker_lost");
        my $direct = $ng->get('/t/ret');
        is($direct->{body}, "returned GET\n", "$path: nginx still serves");
        my ($next) = submit('GET', '/t/nested');
        is(final($next)->{status}, 'completed', "$path: new jobs complete");
    }
    my @signals = $ng->error_log =~ /(exited on signal \d+)/g;
    is(scalar(@signals), $kills, 'no worker died but those killed');
    is(scalar(grep { $_ ne 'exited on signal 9' } @signals), 0, 'all by SIGKILL');
};

subtest 'DELETE of a running job: the client end leaves, the job is cancelled' => sub {
    for my $path ('/t/proxyslow', '/t/nobuf', '/t/nestedslow', '/t/ssislow.html') {
        my ($id) = submit('GET', $path);
        is(wait_state($id, 'running')->{status}, 'running', "$path: running");
        is($ng->request('DELETE', "/jobs/$id")->{status}, 202, "$path: 202");
        my $st = final($id);
        is($st->{status}, 'cancelled', "$path: cancelled");
        is($ng->get("/jobs/$id/result")->{status}, 409, "$path: no result");
    }
    is(wait_idle()->{running}, 0, 'nothing left running');
};

subtest 'the callback runs through a location with a subrequest of its own' => sub {
    my $id = job_of($ng->request('POST', '/job-callback'));
    is(final($id)->{status}, 'completed', 'completed');
    my $deadline = time + 10 * AsyncNginx::wait_factor();
    my @lines;
    while (time < $deadline) {
        @lines = grep { /^\Q$id\E / } $ng->log_file('hook.log');
        last if @lines;
        sleep 0.05;
    }
    is(scalar(@lines), 1, 'the hook got one call for the job');
    like($lines[0] // '', qr/"status":"completed"/, 'with the status JSON');
    unlike($ng->error_log, qr/async_job_callback for job \Q$id\E failed/,
        'not logged as failed');
};

subtest 'queued bodies stay on disk: worker memory does not grow with them' => sub {
    my $rss = sub {
        my $sum = 0;
        for my $pid ($ng->worker_pids) {
            open my $fh, '<', "/proc/$pid/status" or next;
            while (<$fh>) { $sum += $1 if /^VmRSS:\s+(\d+)/ }
        }
        return $sum; # kB
    };
    my $hold = job_of($ng->request('POST', '/held/hold'));
    my $held_state = sub {
        my $r = $ng->get("/held/jobs/$_[0]" . ($_[1] // ''));
        return eval { decode_json($r->{body}) } // {};
    };
    my $deadline = time + 10;
    sleep 0.05 while $held_state->($hold)->{status} ne 'running' && time < $deadline;
    is($held_state->($hold)->{status}, 'running', 'the one slot is held');
    my @bodies = map { my $n = $_; join('', map { chr(($_ * $n + 11) % 256) } 0 .. 4 * 1024 * 1024) } 1 .. 10;
    my $before = $rss->();
    my @ids = map { job_of($ng->request('POST', '/held/sum', body => $_, timeout => 30)) } @bodies;
    my $after = $rss->();
    is(scalar(grep { $held_state->($_)->{status} eq 'queued' } grep { $_ } @ids), 10,
        '10 jobs of 4 MB queued');
    SKIP: {
        skip 'RSS under valgrind or sanitizers', 1 if AsyncNginx::slow();
        ok($after - $before < 8 * 1024,
            'worker RSS grew ' . int(($after - $before) / 1024) . ' MB for 40 MB of queued bodies');
    }
    is($ng->request('DELETE', "/held/jobs/$hold")->{status}, 202, 'the slot is let go');
    for my $i (0 .. $#ids) {
        my $st = {};
        for (1 .. 8) {
            $st = $held_state->($ids[$i], '?wait=5');
            last if $st->{status} =~ /^(completed|failed|cancelled)$/;
        }
        is($st->{status}, 'completed', "job $i completed");
        is($ng->get("/held/jobs/$ids[$i]/result")->{body},
            md5_hex($bodies[$i]) . ' ' . length($bodies[$i]) . "\n",
            "job $i: the backend got its body whole");
    }
};

subtest 'nothing crashed, no alert' => sub {
    my @crash = grep { !/exited on signal 9/ } $ng->crash_lines;
    is(scalar(@crash), 0, 'no alert, no crash') or diag join "\n", @crash[0 .. 5];
    my @errors = grep { /\[error\]/ && !/upstream prematurely closed/ }
        split /\n/, $ng->error_log;
    is(scalar(@errors), 0, 'no [error] but the truncated upstreams')
        or diag join "\n", @errors[0 .. 5];
    $ng->stop;
};

done_testing;
