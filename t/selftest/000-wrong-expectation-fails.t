# Checks that the bundled Test::Nginx::Socket can fail, and that nginx
# never outlives the test script:
#   * must-fail.pl (wrong expectations) must exit non-zero with "not ok"
#     lines for exactly the wrong expectations;
#   * slow-block.pl killed with SIGTERM, then with SIGKILL, while its nginx
#     runs: the port must be released shortly afterwards.
# Plain Test::More; the scripts run as subprocesses with this process's
# @INC, so they use whichever Test::Nginx::Socket this run uses.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $dir  = 't/selftest';
my $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;

# A private server root, so the scripts cannot disturb other test files.
$ENV{TEST_NGINX_SERVROOT} = tempdir('tn-selftest-XXXXXX', TMPDIR => 1,
                                    CLEANUP => 1);
$ENV{PERL5LIB} = join ':', grep { !ref } @INC;

sub port_is_listening {
    my $hex = sprintf ':%04X', $port;
    for my $table ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $table or next;
        while (<$in>) {
            my (undef, $local, undef, $state) = split ' ';
            return 1 if defined $state && $state eq '0A'
                        && substr($local, -5) eq $hex;
        }
    }
    return 0;
}

sub wait_until {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    until ($cond->()) {
        return 0 if time >= $deadline;
        sleep 0.05;
    }
    return 1;
}

# ---- a wrong expectation fails --------------------------------------------

my $out = `$^X $dir/must-fail.pl 2>&1`;
my $status = $?;

isnt($status, 0, 'must-fail.pl exits with a non-zero status')
    or diag $out;
like($out, qr/^not ok \d+ - .*TEST 1: .* - response_body - response is expected/m,
     'wrong response_body is reported as not ok');
like($out, qr/^not ok \d+ - ERROR: client socket timed out - .*TEST 2: /m,
     'a client timeout without abort is reported as not ok');
like($out, qr/^not ok \d+ - .*TEST 3: .*pattern "http request line" should not match any line in error\.log/m,
     'a matching no_error_log pattern is reported as not ok');
like($out, qr/^not ok \d+ - .*TEST 4: .* - header Content-Type not present in the raw headers/m,
     'a present "!Header" is reported as not ok');
like($out, qr/^not ok \d+ - .*TEST 4: .* - header X-Missing ok/m,
     'a missing header is reported as not ok');
like($out, qr/^ok \d+ - .*TEST 3: .* - response_body - response is expected/m,
     'right expectations in the same script still pass');
# TEST 1: 1, TEST 2: timeout + status + body = 3, TEST 3: 1, TEST 4: 2
my $not_ok = () = $out =~ /^not ok /mg;
is($not_ok, 7, 'exactly the wrong expectations fail') or diag $out;
ok(!port_is_listening(), 'no nginx left listening after must-fail.pl');

# ---- nginx goes away with a killed test script ------------------------------

for my $sig (qw(TERM KILL)) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        exec $^X, "$dir/slow-block.pl" or POSIX::_exit(127);
    }

    ok(wait_until(10, \&port_is_listening),
       "SIG$sig: slow-block.pl has nginx listening on port $port");
    sleep 0.3;    # let it get to the --- wait part
    kill $sig, $pid;
    waitpid $pid, 0;
    ok(wait_until(5, sub { !port_is_listening() }),
       "SIG$sig: nginx is gone once the test script is killed");
}

done_testing();
