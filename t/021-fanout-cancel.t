# Fan-out calls run in parallel, and every way a fan-out can give up on a
# call (its timeout, the overall deadline, a failed required call, a lost
# hedge race, the client leaving) closes the call's upstream connection at
# once. Proved from the backend's side: the backend is a second server
# block reached through proxy_pass; it logs 499 with a request time that
# matches the cut-off, not the backend's full delay.
#
# Ports: $TEST_NGINX_SERVER_PORT (fan-out), +1 the backend server block
# (TEST_NGINX_FANOUT_BACKEND_PORT), +2 a Perl origin for the hedge test
# (TEST_NGINX_FANOUT_ORIGIN_PORT).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use JSON::PP;
use AsyncNginx;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $ENV{TEST_NGINX_FANOUT_BACKEND_PORT} || $port + 1;
my $origin = $ENV{TEST_NGINX_FANOUT_ORIGIN_PORT} || $port + 2;

my $http = <<"EOF";
    log_format backend '\$uri \$status \$request_time';
    server {
        listen 127.0.0.1:\$PORT;
        location /up/ {
            proxy_pass http://127.0.0.1:$backend/be/;
        }
        location /bad { echo_status 404; echo_sleep 0.2; echo "nope"; }

        location = /parallel {
            async_fetch a /up/sleep/0.5?v=a;
            async_fetch b /up/sleep/0.5?v=b;
            async_fetch c /up/sleep/0.5?v=c;
        }
        location = /call-timeout {
            async_fetch fast /up/sleep/0.5?v=fast;
            async_fetch slow /up/sleep/3?v=slow timeout=200ms optional;
        }
        location = /default-timeout {
            async_fetch_timeout 300ms;
            async_fetch slow /up/sleep/3?v=slow optional;
            async_fetch quick /up/sleep/0?v=quick;
        }
        location = /deadline {
            async_timeout 300ms;
            async_fetch quick /up/sleep/0?v=quick;
            async_fetch slow1 /up/sleep/3?v=slow1 optional;
            async_fetch slow2 /up/sleep/3?v=slow2 optional;
        }
        location = /deadline-required {
            async_timeout 300ms;
            async_fetch quick /up/sleep/0?v=quick optional;
            async_fetch slow /up/sleep/3?v=slow;
        }
        location = /required-fails {
            async_fetch slow1 /up/sleep/3?v=slow1;
            async_fetch bad /bad;
            async_fetch slow2 /up/sleep/3?v=slow2 optional;
        }
        location = /required-timeout {
            async_fetch slow /up/sleep/3?v=slow timeout=250ms;
            async_fetch other /up/sleep/3?v=other optional;
        }
        location = /hedge {
            async_fetch h /up/origin/h hedge=150ms timeout=5s;
        }
        location = /abort {
            async_fetch a /up/sleep/3?v=a;
            async_fetch b /up/sleep/3?v=b optional;
        }
    }
    server {
        listen 127.0.0.1:$backend;
        access_log logs/backend.log backend;
        location /be/sleep/ {
            proxy_pass http://127.0.0.1:$backend/origin/;
        }
        location /be/origin/ {
            proxy_pass http://127.0.0.1:$origin/;
        }
        location /origin/ {
            access_log off;
            echo_sleep \$uri_delay;
            echo -n "\$arg_v";
        }
    }
    map \$uri \$uri_delay {
        ~^/origin/(?<d>[0-9.]+)\$ \$d;
        default 0;
    }
EOF

my $ng = AsyncNginx->new(name => 'fanout-cancel', workers => 1,
    http => $http);
$ng->start;

# Backend log lines "/be/sleep/3 499 0.201" for uri $uri, polled until $n
# of them are there (bounded: 5 s).
sub backend_lines {
    my ($uri_re, $n) = @_;
    my $deadline = time + 5;
    my @lines;
    while (time < $deadline) {
        @lines = grep { $_->[0] =~ $uri_re }
            map { [split ' '] } $ng->log_file('backend.log');
        last if @lines >= $n;
        sleep 0.05;
    }
    return @lines;
}

sub truncate_backend_log {
    open my $fh, '>', $ng->root . '/logs/backend.log' or die $!;
    close $fh;
}

# Each slow call must have been cut off near $cut seconds: logged 499 by
# the backend, with a request time well below the backend's delay of 3 s.
sub cut_off_ok {
    my ($title, $uri_re, $n, $cut) = @_;
    my @lines = backend_lines($uri_re, $n);
    is(scalar @lines, $n, "$title: backend saw $n slow request(s) end")
        or diag explain [ $ng->log_file('backend.log') ];
    for my $l (@lines) {
        is($l->[1], 499, "$title: backend logged the client going away");
        ok($l->[2] >= $cut - 0.05 && $l->[2] < $cut + 1.0,
            "$title: backend request time $l->[2] s matches the cut-off "
            . "at $cut s, not the 3 s delay");
    }
}

subtest 'three calls of 500 ms run in parallel' => sub {
    truncate_backend_log();
    my $r = $ng->get('/parallel');
    is($r->{status}, 200, 'status 200');
    ok($r->{time} < 0.9, "well under 1 s: $r->{time} s");
    is_deeply(decode_json($r->{body}), { a => 'a', b => 'b', c => 'c' },
        'all three values');
    is($r->{headers}{'x-async-completed'}, 'true', 'X-Async-Completed: true');
    ok(!exists $r->{headers}{'x-async-failed'}, 'no X-Async-Failed');
};

subtest 'per-call timeout cancels the call' => sub {
    truncate_backend_log();
    my $r = $ng->get('/call-timeout');
    is($r->{status}, 200, 'optional timeout: partial 200');
    is_deeply(decode_json($r->{body}), { fast => 'fast', slow => undef },
        'the timed-out call is null');
    is($r->{headers}{'x-async-completed'}, 'false', 'not completed');
    is($r->{headers}{'x-async-failed'}, 'slow=timeout', 'names the call');
    cut_off_ok('timeout=200ms', qr{^/be/sleep/3$}, 1, 0.2);
};

subtest 'async_fetch_timeout is the default timeout' => sub {
    truncate_backend_log();
    my $r = $ng->get('/default-timeout');
    is($r->{status}, 200, 'status 200');
    ok($r->{time} < 1.5, "answered after the timeout: $r->{time} s");
    is($r->{headers}{'x-async-failed'}, 'slow=timeout', 'names the call');
    cut_off_ok('async_fetch_timeout 300ms', qr{^/be/sleep/3$}, 1, 0.3);
};

subtest 'async_timeout ends the whole fan-out' => sub {
    truncate_backend_log();
    my $r = $ng->get('/deadline');
    is($r->{status}, 200, 'only optional calls ran out: partial 200');
    ok($r->{time} < 1.5, "answered at the deadline: $r->{time} s");
    is_deeply(decode_json($r->{body}),
        { quick => 'quick', slow1 => undef, slow2 => undef }, 'partial result');
    is($r->{headers}{'x-async-failed'}, 'slow1=timeout, slow2=timeout',
        'both slow calls timed out');
    cut_off_ok('async_timeout 300ms', qr{^/be/sleep/3$}, 2, 0.3);

    truncate_backend_log();
    $r = $ng->get('/deadline-required');
    is($r->{status}, 504, 'a required call ran out: 504');
    my $err = decode_json($r->{body});
    is($err->{call}, 'slow', 'the error body names the call');
    is($err->{reason}, 'timeout', 'and the reason');
    cut_off_ok('async_timeout, required', qr{^/be/sleep/3$}, 1, 0.3);
};

subtest 'a failed required call ends the fan-out at once' => sub {
    truncate_backend_log();
    my $r = $ng->get('/required-fails');
    is($r->{status}, 502, 'status 502');
    ok($r->{time} < 1.0, "no waiting for the others: $r->{time} s");
    my $err = decode_json($r->{body});
    is($err->{call}, 'bad', 'the error body names the call');
    is($err->{reason}, '404', 'with its status');
    is($r->{headers}{'x-async-failed'},
        'slow1=cancelled, bad=404, slow2=cancelled', 'X-Async-Failed');
    cut_off_ok('required 404', qr{^/be/sleep/3$}, 2, 0.2);

    truncate_backend_log();
    $r = $ng->get('/required-timeout');
    is($r->{status}, 504, 'a required timeout: 504');
    is($r->{headers}{'x-async-failed'}, 'slow=timeout, other=cancelled',
        'X-Async-Failed');
    cut_off_ok('required timeout', qr{^/be/sleep/3$}, 2, 0.25);
};

subtest 'hedge: the second request wins, the first is cancelled' => sub {
    # the origin holds its first connection and answers the second at once
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $origin, Listen => 16, ReuseAddr => 1)
        or die "origin listen on $origin: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        alarm 10;
        my @held;
        my $n = 0;
        while (my $c = $listen->accept) {
            my $req = '';
            while ($req !~ /\r\n\r\n/) {
                sysread($c, my $buf, 4096) or last;
                $req .= $buf;
            }
            if (++$n == 1) {
                push @held, $c;
                next;
            }
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                . "Content-Length: 15\r\nConnection: close\r\n\r\n"
                . '{"attempt": 2}' . "\n";
            close $c;
        }
        exit 0;
    }
    close $listen;
    truncate_backend_log();
    my $r = $ng->get('/hedge');
    kill 'TERM', $pid;
    waitpid $pid, 0;
    is($r->{status}, 200, 'status 200');
    ok($r->{time} < 1.5, "the hedge answered: $r->{time} s");
    is_deeply(decode_json($r->{body}), { h => { attempt => 2 } },
        'the hedged request\'s answer, inlined as JSON');
    is($r->{headers}{'x-async-completed'}, 'true', 'completed');
    my @lines = backend_lines(qr{^/be/origin/h$}, 2);
    is(scalar @lines, 2, 'two identical requests reached the backend');
    my ($lost) = grep { $_->[1] == 499 } @lines;
    my ($won) = grep { $_->[1] == 200 } @lines;
    ok($lost && $won, 'one won (200), the other was cancelled (499)')
        or diag explain \@lines;
    ok($lost && $lost->[2] >= 0.1 && $lost->[2] < 1.2,
        'the loser was cut off when the winner answered');
};

subtest 'client abort cancels every running call' => sub {
    truncate_backend_log();
    my ($r) = $ng->parallel([ { path => '/abort', close_after => 0.3 } ],
        timeout => 5);
    ok($r->{aborted}, 'the client went away');
    cut_off_ok('client abort', qr{^/be/sleep/3$}, 2, 0.3);
};

my @errors = grep { /\[error\]/ } split /\n/, $ng->error_log;
is(scalar @errors, 0, 'no [error] in the error log') or diag explain \@errors;
is(scalar($ng->crash_lines), 0, 'no alert or crash')
    or diag join "\n", $ng->crash_lines;
$ng->stop;

done_testing;
