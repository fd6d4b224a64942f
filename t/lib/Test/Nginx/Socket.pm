package Test::Nginx::Socket;

# ---------------------------------------------------------------------------
# Test::Nginx::Socket -- a compatible subset of the CPAN module of the same
# name (openresty/test-nginx), written for this project.
#
# Upstream Test::Nginx is not packaged for Debian, so the project ships this
# runner.  It is put on @INC (prove -I t/lib) only when
# `perl -MTest::Nginx::Socket -e1` fails, i.e. when upstream is not
# installed; the same .t files must pass under both.  What has to agree
# with upstream is therefore: the generated nginx.conf, the test names, and
# above all how many TAP tests each block emits, so that
# "plan tests => repeat_each() * blocks() * N" holds under both.
#
# Supported
#   exports    repeat_each plan run_tests run_test blocks (and the rest of
#              Test::Base/Test::More's exports) master_on master_off
#              master_process_enabled workers worker_connections log_level
#              no_shuffle no_long_string no_root_location
#              add_block_preprocessor add_response_body_check
#              add_cleanup_handler env_to_nginx config_preamble is_str
#              server_name server_addr server_port server_port_for_client
#              server_root html_dir timeout no_nginx_manager
#              check_accum_error_log bail_out use_hup (a warning no-op)
#   sections   main_config http_config config post_main_config server_name
#              user_files log_level error_log_file init
#              request request_eval raw_request raw_request_middle_delay
#              more_headers pipelined_requests shutdown timeout abort wait
#              ignore_response http09 server_addr_for_client
#              error_code error_code_like
#              response_headers (incl. "!Name") response_headers_like
#              raw_response_headers_like raw_response_headers_unlike
#              response_body response_body_eval response_body_like
#              response_body_unlike response_body_filters charset
#              error_log no_error_log grep_error_log grep_error_log_out
#              access_log no_access_log must_die
#              skip_nginx skip_nginx2 skip_openssl skip_eval todo todo_nginx
#              stap (reported as one skipped test, as upstream does without
#              SystemTap); ONLY, SKIP, LAST and filters such as "eval" come
#              from Test::Base
#   env        TEST_NGINX_BINARY (default: nginx from PATH)
#              TEST_NGINX_SERVER_PORT / TEST_NGINX_PORT (default 1984),
#              TEST_NGINX_CLIENT_PORT, TEST_NGINX_RANDOMIZE
#              TEST_NGINX_SERVROOT (default t/servroot under the cwd)
#              TEST_NGINX_LOAD_MODULES (space-separated .so paths)
#              TEST_NGINX_LOG_LEVEL TEST_NGINX_MASTER_PROCESS
#              TEST_NGINX_TIMEOUT TEST_NGINX_SLEEP TEST_NGINX_NO_SHUFFLE
#              TEST_NGINX_FORCE_RESTART_ON_TEST TEST_NGINX_WORKER_USER
#              TEST_NGINX_EVENT_TYPE TEST_NGINX_CHECK_ACCUM_ERR_LOG
#              TEST_NGINX_IGNORE_MISSING_DIRECTIVES TEST_NGINX_ERROR_LOG
#              TEST_NGINX_NO_NGINX_MANAGER TEST_NGINX_VERBOSE
#              TEST_NGINX_USE_VALGRIND (+ TEST_NGINX_VALGRIND_SUPP, see below)
#              $TEST_NGINX_* substitution (and $TEST_NGINX_RAND_PORT_<N>) in
#              config, http_config, main_config, post_main_config and
#              user_files, as upstream; $ServerPort / $ServerPortForClient
#              in response_body(_like) and response_headers values.
#
# Per-block test counts (per repeat_each round; "responses" is the number
# of entries in pipelined_requests, or of requests in an array-valued
# "request", else 1) -- all as upstream:
#   for every response, unless ignore_response:
#     1  status code (error_code_like, error_code, or 200)
#     1  each of raw_response_headers_like, raw_response_headers_unlike
#     1  per distinct header line in response_headers ("!X" included), or
#        else per line in response_headers_like
#     1  response_body / response_body_eval, or else response_body_like /
#        response_body_unlike
#   for every response (the error log is read after each):
#     1  grep_error_log
#     1  per error_log pattern
#     1  per no_error_log pattern (a pattern that matches fails once per
#        matching line, so a failing block may emit extra tests)
#     1  per access_log / no_access_log pattern, unless ignore_response
#   once: 1 if the block has a stap section (skipped)
#   skip_* / todo sections: exactly N skipped (todo) tests instead of all.
#   must_die: 1 (exit status) + the error-log tests, no request.
#   Extra failures (timeout without abort, connect failure, bad chunked
#   body, "Assertion ... failed" in the log, valgrind errors) add tests.
#   Example: request + response_body + one no_error_log line = 3 tests.
#
# Differences from upstream (on purpose or not implemented)
#   * nginx runs with "daemon off" as a child of the test script, in its
#     own process group, and is reaped/killed by us (see Subset/Server.pm);
#     upstream writes "daemon on".  Readiness = the port is listening.
#   * The test server listens on 127.0.0.1:PORT (server_addr), not on all
#     addresses, so tests stay on loopback.  The one visible effect: an
#     extra server in http_config with "listen $TEST_NGINX_SERVER_PORT"
#     and a server_name is not reachable by name here (nginx keeps
#     127.0.0.1:PORT and *:PORT apart), while "listen 127.0.0.1:PORT"
#     would swallow all requests under upstream.  Portable tests give
#     extra servers their own port ($TEST_NGINX_RAND_PORT_<N>).
#   * load_module lines (TEST_NGINX_LOAD_MODULES) go first in nginx.conf,
#     upstream appends them after main_config.
#   * nginx >= 1.19.5 is started with "-e logs/error.log" so that start-up
#     errors land in error.log even with Debian's nginx (whose built-in
#     log is stderr), as they do with the OpenResty builds upstream
#     targets.  They are still printed on stderr as well.
#   * Extra failures (timeout, broken chunked body, ...) do not set
#     Test::Builder's no_ending as upstream does, so the script exits
#     non-zero; upstream exits 0 there (prove fails the file either way).
#   * Upstream's env lines for mockeagain/LD_PRELOAD/ASAN are not written;
#     env_to_nginx() ones are.
#   * Restart decision: by default nginx restarts for every block, as
#     upstream.  With TEST_NGINX_FORCE_RESTART_ON_TEST=0 we compare the
#     whole generated nginx.conf (upstream compares only "--- config").
#   * error_log checks of a block whose nginx was not restarted start at
#     the end of the log as it was, not at offset 0 (upstream would also
#     see earlier blocks' lines).
#   * Valgrind: TEST_NGINX_USE_VALGRIND=1 runs nginx as upstream does
#     (memcheck, --leak-check=full, -q, --gen-suppressions=all) with the
#     suppressions file from TEST_NGINX_VALGRIND_SUPP, else
#     t/valgrind.suppress, else ./valgrind.suppress.  Valgrind writes to
#     logs/valgrind.<pid>.log; nginx is stopped after every block, and any
#     report other than "Warning:" lines is appended to error.log and makes
#     the block fail with one extra test.  (Upstream leaves the report on
#     stderr for a human or CI script to spot.)  A non-numeric value is
#     used as valgrind's option string, as upstream.
#   * Without Test::LongString (not in Debian) long strings are compared
#     with Test::Base's is(), which prints a diff.
#   * Not supported (bail out if used): http2, http3, tcp_listen,
#     udp_listen, shutdown_error_log, no_shutdown_error_log, reload_fails.
#     Ignored with a warning: TEST_NGINX_USE_HUP, _USE_HTTP2, _USE_HTTP3,
#     _USE_STAP, _USE_RR, _CHECK_LEAK, _BENCHMARK, _NO_CLEAN, _REUSE_PORT.
#     Not provided: Test::Nginx::Util's variables and functions, curl,
#     skip_slave, set_http_config_filter.
#
# Self-tests of this runner live in t/selftest/ (not run with the suite):
#   TEST_NGINX_LOAD_MODULES=/usr/lib/nginx/modules/ngx_http_echo_module.so \
#       prove -I t/lib -r t/selftest/
# Helpers: Subset/Config.pm (nginx.conf, server root), Subset/Server.pm
# (process lifecycle), Subset/Request.pm (request bytes), Subset/Client.pm
# (socket client, response parsing), Subset/Checks.pm (the TAP checks).
# ---------------------------------------------------------------------------

use strict;
use warnings;

# "-base" (lower case): inherit Test::Base's block parsing and re-export
# its functions (plan, blocks, is, ...) without Spiffy's source filter.
use Test::Base -base;

use Carp qw(croak);
use File::Path qw(remove_tree);
use File::Spec ();
use HTTP::Response ();
use List::Util qw(shuffle);
use POSIX ();
use Scalar::Util qw(looks_like_number);
use Test::More ();
use Time::HiRes qw(sleep);

use Test::Nginx::Subset::Config qw(
    parse_time expand_env_in_text pick_free_port reset_server_root
    write_user_files render_nginx_conf
);
use Test::Nginx::Subset::Server qw(
    start_nginx stop_nginx nginx_pid wait_port_free kill_stale_nginx
);
use Test::Nginx::Subset::Request qw(requests_from_block);
use Test::Nginx::Subset::Client qw(send_request parse_response);
use Test::Nginx::Subset::Checks qw(
    check_error_code check_raw_response_headers check_response_headers
    transform_response_body check_response_body check_error_log
    check_access_log check_stap fail_extra
);

# Behaviour (test counts, names, sections) follows upstream 0.29.
our $VERSION = '0.29';

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test
    repeat_each config_preamble worker_connections
    master_process_enabled
    no_long_string workers master_on master_off
    log_level no_shuffle no_root_location use_hup
    server_name
    server_addr server_root html_dir server_port server_port_for_client
    timeout no_nginx_manager check_accum_error_log
    add_block_preprocessor bail_out add_cleanup_handler
    add_response_body_check
);

# ---- settings (names as upstream, so its documentation carries over) -----

our $NginxBinary          = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $ServerAddr           = '127.0.0.1';
our $ServerName           = 'localhost';
our $ServerPort           = $ENV{TEST_NGINX_SERVER_PORT}
                            || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient  = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $RepeatEach           = 1;
our $Workers              = 1;
our $WorkerConnections    = 64;
our $LogLevel             = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $Timeout              = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep       = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $NoShuffle            = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoNginxManager       = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $CheckAccumErrLog     = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $ForceRestartOnTest   = $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} // 1;
our $LoadModules          = $ENV{TEST_NGINX_LOAD_MODULES};
our $UseValgrind          = $ENV{TEST_NGINX_USE_VALGRIND};
our $Verbose              = $ENV{TEST_NGINX_VERBOSE};
our $Randomize            = $ENV{TEST_NGINX_RANDOMIZE};
our $WorkerUser           = $ENV{TEST_NGINX_WORKER_USER};
our $NoLongString;
our $NoRootLocation       = 0;
our $ConfigPreamble       = '';

our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers, @ResponseBodyChecks);
our ($NginxVersion, $NginxRawVersion, $OpenSSLVersion);
our ($PrevConfig, $PrevConfText);
our $ErrLogFilePos = 0;
our $TotalConnectingTimeouts = 0;

die "Bad value in the env TEST_NGINX_WORKER_USER: $WorkerUser\n"
    if defined $WorkerUser && $WorkerUser !~ /^\w+(?:\s+\w+)?$/;

if ($Randomize) {
    $ServerPort = $ServerPortForClient = pick_free_port($ServerAddr, {})
        // die "Cannot find an available listening port number.\n";
}

our $ServRoot = File::Spec->rel2abs(
    $Randomize ? "t/servroot_$ServerPort"
               : ($ENV{TEST_NGINX_SERVROOT} || 't/servroot'));
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";

for my $env (qw(TEST_NGINX_USE_HUP TEST_NGINX_USE_HTTP2 TEST_NGINX_USE_HTTP3
                TEST_NGINX_USE_STAP TEST_NGINX_USE_RR TEST_NGINX_CHECK_LEAK
                TEST_NGINX_BENCHMARK TEST_NGINX_NO_CLEAN
                TEST_NGINX_REUSE_PORT)) {
    warn "WARNING: $env is not supported by the bundled "
         . "Test::Nginx::Socket subset (t/lib); ignored\n" if $ENV{$env};
}

# Sections whose behaviour this subset does not implement.  Running such
# a block "as if" would give results upstream would not, so we stop.
my @UnsupportedSections = qw(http2 http3 tcp_listen udp_listen
                             shutdown_error_log no_shutdown_error_log
                             reload_fails);

use constant DRY_RUN_RESPONSE => "200 OK HTTP/1.0\r\nContent-Length: 0\r\n\r\n";

# ---- exported configuration functions ------------------------------------

sub repeat_each (@)  { $RepeatEach = shift if @_; return $RepeatEach }
sub workers (@)      { @_ ? ($Workers = shift) : $Workers }
sub worker_connections (@) {
    @_ ? ($WorkerConnections = shift) : $WorkerConnections;
}
sub log_level (@)    { @_ ? ($LogLevel = shift) : $LogLevel }
sub timeout (@)      { @_ ? ($Timeout = shift) : $Timeout }
sub server_addr (@)  { @_ ? ($ServerAddr = shift) : $ServerAddr }
sub server_name (@)  { @_ ? ($ServerName = shift) : $ServerName }
sub server_port (@)  { @_ ? ($ServerPort = shift) : $ServerPort }
sub server_port_for_client (@) {
    @_ ? ($ServerPortForClient = shift) : $ServerPortForClient;
}
sub server_root ()   { $ServRoot }
sub html_dir ()      { $HtmlDir }
sub master_on ()     { $MasterProcessEnabled = 'on' }
sub master_off ()    { $MasterProcessEnabled = 'off' }
sub master_process_enabled (@) {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = shift() ? 'on' : 'off';
}
sub no_long_string ()   { $NoLongString = 1 }
sub no_shuffle ()       { $NoShuffle = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub no_nginx_manager () { $NoNginxManager = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub config_preamble ($) { $ConfigPreamble = shift }
sub add_block_preprocessor (&)  { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)     { unshift @CleanupHandlers, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

my $WarnedHup;
sub use_hup () {
    warn "WARNING: use_hup() is not supported by the bundled "
         . "Test::Nginx::Socket subset; nginx is restarted instead\n"
        unless $WarnedHup++;
}

sub env_to_nginx (@) {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    return Test::Nginx::Subset::Checks::is_str($got, $expected, $desc,
                                               $NoLongString);
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# ---- running the blocks --------------------------------------------------

sub run_tests () {
    read_nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
    install_signal_handlers();

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;

    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_test($block);
    }

    cleanup();
}

# Note: Test::Base block accessors return an empty list for a missing
# section; inside argument lists they are called as "scalar $block->foo".
sub run_test ($) {
    my ($block) = @_;
    return if defined $block->SKIP;

    my $name = $block->name;
    reject_unsupported_sections($block);

    my $rand_ports = {};
    my $config = expand_or_bail(scalar $block->config, $name, $rand_ports);

    local $LogLevel = $block->log_level || $LogLevel;
    local $UseValgrind = defined $block->must_die ? undef : $UseValgrind;

    my $plan = skip_and_todo_plan($block);
    my ($dry_run, $restarted) = (0, 0);

    if (!$NoNginxManager && !$plan->{skip}) {
        if (defined $block->must_die) {
            run_must_die($block, $config, $rand_ports);
            return;
        }
        ($dry_run, $restarted) = prepare_nginx($block, $config, $rand_ports);

    } elsif ($NoNginxManager && defined $config) {
        Test::More::diag("NO_NGINX_MANAGER activated: config for $name ignored");
    }

    run_init_code($block);

    # Error-log checks look at what this block produced: all of a freshly
    # started nginx's log (start-up messages included, as upstream), or
    # what was appended since now when the previous nginx is reused.
    $ErrLogFilePos = $restarted ? 0 : (-s $ErrLogFile || 0);

    for my $rep (0 .. $RepeatEach - 1) {
        write_block_user_files($block, $rand_ports) if $rep > 0;
        run_one_round($block, $dry_run, $rep, $plan);
    }

    append_to_total_error_log($name);
    finish_valgrind_block($name) if $UseValgrind && !$NoNginxManager;
}

sub run_one_round {
    my ($block, $dry_run, $rep, $plan) = @_;
    my $name = $block->name;

    if ($plan->{skip}) {
      SKIP: {
            Test::More::skip("$name - $plan->{skip_reason}", $plan->{count});
        }
        return;
    }

    if ($plan->{todo}) {
      TODO: {
            Test::More::todo_skip("$name - $plan->{todo_reason}",
                                  $plan->{count});
        }
        return;
    }

    run_requests($block, $dry_run, $rep);
}

# Sends the block's request(s) and runs the checks on each response, then
# the log checks; see the counting rules at the top of this file.
sub run_requests {
    my ($block, $dry_run, $rep) = @_;
    my $name = $block->name;

    my $reqs = eval { requests_from_block($block, $ServerName) };
    bail_out("$name - $@") if $@;
    bail_out("$name - request empty") unless @$reqs;

    my $timeout = parse_time(scalar $block->timeout) // $Timeout;
    my $pipelined = $block->pipelined_requests
                    ? scalar @{ $block->pipelined_requests } : 0;
    my $need_array = $pipelined ? 1 : @$reqs > 1;
    my $idx = 0;

    for my $r (0 .. $#$reqs) {
        my $packets = $reqs->[$r];
        my $raw = $dry_run ? DRY_RUN_RESPONSE
                           : fetch_response($block, $packets, $timeout);
        my $head_req = (join '', map { $_->{value} } @$packets)
                       =~ /^\s*HEAD\s+/ ? 1 : 0;
        my $responses = $pipelined || 1;

        for my $k (1 .. $responses) {
            $raw = check_one_response($block, $raw, {
                dry_run => $dry_run, rep => $rep, idx => $idx,
                need_array => $need_array, head_req => $head_req,
                pipelined => $pipelined,
            });

            if ($k < $responses || $r < $#$reqs) {
                sleep $block->wait if $block->wait;
                check_logs($block, $dry_run, $rep);
            }
            $idx++;
        }
    }

    sleep $block->wait if $block->wait;
    check_stap({ block => $block, name => $name, dry_run => $dry_run });
    check_logs($block, $dry_run, $rep);
}

# Runs the response checks on the first response in $raw and returns the
# bytes after it (the next pipelined response).
sub check_one_response {
    my ($block, $raw, $o) = @_;
    my $name = $block->name;
    return undef if defined $block->ignore_response;

    my ($res, $raw_headers, $left, $err);
    if (defined $block->http09) {
        $res = HTTP::Response->new(200, 'OK', [], $raw // '');
        $raw_headers = '';
    } else {
        ($res, $raw_headers, $left, $err) =
            parse_response($raw, $o->{head_req}, $name);
        fail_extra("$name - $err") if defined $err;
    }

    if (!$o->{pipelined} && defined $left && length $left) {
        (my $shown = $left) =~
            s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
        warn "WARNING: $name - unexpected extra bytes after last chunk in "
             . "response: \"$shown\"\n";
    }

    my $t = {
        %$o,
        block       => $block,
        name        => $name,
        res         => $res,
        raw_headers => $raw_headers,
        server_port => $ServerPort,
        client_port => $ServerPortForClient,
        plain_is    => $NoLongString,
        bail        => \&bail_out,
        body_checks => \@ResponseBodyChecks,
    };
    check_error_code($t);
    check_raw_response_headers($t);
    check_response_headers($t);
    transform_response_body($t);
    check_response_body($t);

    return $left;
}

sub check_logs {
    my ($block, $dry_run, $rep) = @_;
    my $t = {
        block            => $block,
        name             => $block->name,
        dry_run          => $dry_run,
        rep              => $rep,
        plain_is         => $NoLongString,
        bail             => \&bail_out,
        error_log_lines  => \&error_log_data,
        access_log_lines => \&access_log_data,
    };
    check_error_log($t);
    check_access_log($t) unless defined $block->ignore_response;
}

# Returns the raw response, or undef if we could not connect.  A timeout is
# a failed test unless the block says "--- abort".
sub fetch_response {
    my ($block, $packets, $timeout) = @_;
    my $name = $block->name;
    my $addr = $block->server_addr_for_client // $ServerAddr;

    my $r = send_request(
        addr         => $addr,
        port         => $ServerPortForClient,
        packets      => $packets,
        timeout      => $timeout,
        middle_delay => scalar $block->raw_request_middle_delay,
        shutdown     => scalar $block->shutdown,
    );

    if (defined $r->{connect_error}) {
        my $msg = "$name - Can't connect to $addr:$ServerPortForClient: "
                  . "$r->{connect_error} (aborted)\n";
        bail_out($msg) if ++$TotalConnectingTimeouts >= 3;
        fail_extra($msg);
        return undef;
    }

    warn "!!! resp: [$r->{resp}]\n" if $Verbose;

    if ($r->{timed_out} && !defined $block->abort) {
        fail_extra("ERROR: client socket timed out - $name\n");
    }
    return $r->{resp};
}

# The log lines written since the last call (all lines with
# check_accum_error_log).  The short sleep lets nginx write what it logs
# after the response was sent (log phase, connection close).
sub error_log_data () {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos > 0;
    my @lines = <$in>;
    $ErrLogFilePos = tell $in unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

# Upstream reads the whole access log every time; so do we.
sub access_log_data () {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or return [];
    my @lines = <$in>;
    close $in;
    return \@lines;
}

# ---- skip / todo / must_die ----------------------------------------------

# Returns { skip, count, skip_reason, todo, todo_reason } from the block's
# skip_eval, skip_nginx, skip_nginx2, skip_openssl, todo_nginx and todo.
sub skip_and_todo_plan {
    my ($block) = @_;
    my $name = $block->name;
    my %p = (skip_reason => 'various reasons', todo_reason => 'various reasons');

    if (defined(my $spec = $block->skip_eval)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            my ($count, $code) = ($1, $2);
            @p{qw(count skip_reason)} = ($count, 'skip_eval');
            $p{skip} = eval_user_code($code);
            bail_out("$name - skip_eval - failed to eval the Perl code "
                     . "\"$code\": $@") if $@;
        }
    }

    my $ver = qr/(\d+)\.(\d+)\.(\d+)/;
    if (defined(my $spec = $block->skip_nginx)) {
        my ($count, $op, @v) =
            $spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*$ver(?:\s*:\s*(.*))?\s*$/
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        my $why = $v[3];
        $p{count} = $count;
        $p{skip_reason} = $why || "nginx version $op $v[0].$v[1].$v[2]";
        $p{skip} = 1 if version_matches($NginxVersion, $op, @v[0 .. 2]);

    } elsif (defined(my $spec2 = $block->skip_nginx2)) {
        my ($count, $op1, @r) = $spec2 =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*$ver
            \s*(or|and)\s*([<>]=?)\s*$ver(?:\s*:\s*(.*))?\s*$}x
            or bail_out("$name - Invalid --- skip_nginx2 spec: $spec2");
        my ($a1, $a2, $a3, $logic, $op2, $b1, $b2, $b3, $why) = @r;
        my $m1 = version_matches($NginxVersion, $op1, $a1, $a2, $a3);
        my $m2 = version_matches($NginxVersion, $op2, $b1, $b2, $b3);
        $p{count} = $count;
        $p{skip_reason} = $why if $why;
        $p{skip} = 1 if !defined $NginxVersion
                        || ($logic eq 'or' ? ($m1 || $m2) : ($m1 && $m2));
    }

    if (defined(my $spec = $block->skip_openssl)) {
        my ($count, $op, @v) = $spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*
            (\d+)\.(\d+)\.(\d+)([a-z])?(?:\s*:\s*(.*))?\s*$}x
            or bail_out("$name - Invalid --- skip_openssl spec: $spec");
        my $why = $v[4];
        $p{count} = $count;
        $p{skip_reason} = $why || (defined $OpenSSLVersion
            ? "OpenSSL version $op $v[0].$v[1].$v[2]" . ($v[3] // '')
            : "Not built with OpenSSL");
        $p{skip} = 1 if !defined $OpenSSLVersion
            || compare_versions($OpenSSLVersion, $op,
                                openssl_canon_version(@v[0 .. 3]));
    }

    if (defined(my $spec = $block->todo_nginx)) {
        my ($op, @v) = $spec =~ /^\s*([<>]=?)\s*$ver(?:\s*:\s*(.*))?\s*$/
            or bail_out("$name - Invalid --- todo_nginx spec: $spec");
        $p{todo_reason} = $v[3] if $v[3];
        $p{todo} = 1 if version_matches($NginxVersion, $op, @v[0 .. 2]);
    }

    if (defined(my $spec = $block->todo)) {
        my ($count, $why) = $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- todo spec: $spec");
        @p{qw(todo count todo_reason)} = (1, $count, $why);
    }

    return \%p;
}

sub canon_version { sprintf '%d.%03d%03d', @_[0 .. 2] }

sub openssl_canon_version {
    my ($x, $y, $z, $letter) = @_;
    return canon_version($x, $y, $z) unless defined $letter;
    return sprintf '%d.%03d%03d%03d', $x, $y, $z, ord($letter) - ord('a');
}

sub compare_versions {
    my ($have, $op, $want) = @_;
    return $op eq '<'  ? $have <  $want
         : $op eq '<=' ? $have <= $want
         : $op eq '>'  ? $have >  $want
         :               $have >= $want;
}

# Upstream treats an unknown nginx version as matching "<" specs only.
sub version_matches {
    my ($have, $op, @want) = @_;
    return $op =~ /^</ unless defined $have;
    return compare_versions($have, $op, canon_version(@want));
}

# "--- must_die": nginx has to fail to start.  One test per round on its
# exit status, then the error-log checks; no request is sent.
sub run_must_die {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;
    my $expect = $block->must_die;

    bail_out("$name: --- stap cannot be used with --- must_die")
        if defined $block->stap;

    my $conf = build_nginx_conf($block, $config, $rand_ports);
    ($PrevConfig, $PrevConfText) = ($config, $conf);
    fresh_server_root($block, $conf, $rand_ports);
    $ErrLogFilePos = 0;

    for my $rep (0 .. $RepeatEach - 1) {
        my @cmd = nginx_command();
        my $r = start_nginx(cmd => \@cmd, addr => $ServerAddr,
                            port => $ServerPort, wait => 10);
        my $status = $r->{exited} ? $r->{status} : 0;
        my $exit_code = $status >> 8;

        if ($r->{exited} && $exit_code == 127) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (looks_like_number($expect)) {
            Test::More::is($expect, $exit_code,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        check_error_log({
            block => $block, name => $name, dry_run => 0, rep => $rep,
            plain_is => $NoLongString, bail => \&bail_out,
            error_log_lines => \&error_log_data,
        });

        if ($r->{pid}) {
            warn "WARNING: $name - nginx must die but it does not; "
                 . "killing it (req $rep)\n";
            stop_nginx(grace => $Timeout, name => $name);
        }
    }
}

# ---- nginx lifecycle -----------------------------------------------------

# Makes sure the right nginx is running for this block.  Returns
# ($dry_run, $restarted); $dry_run is false or the reason why nginx could
# not run (TEST_NGINX_IGNORE_MISSING_DIRECTIVES).
sub prepare_nginx {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;

    if (!defined $config) {
        # As upstream: no config section means "keep the previous nginx".
        bail_out("$name - No '--- config' section specified and could not "
                 . "get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?")
            unless defined $PrevConfig;
        write_block_user_files($block, $rand_ports);
        return (0, 0);
    }

    my $conf = build_nginx_conf($block, $config, $rand_ports);
    if (!$ForceRestartOnTest && nginx_pid()
        && defined $PrevConfText && $conf eq $PrevConfText) {
        write_block_user_files($block, $rand_ports);
        return (0, 0);
    }

    ($PrevConfig, $PrevConfText) = ($config, $conf);
    fresh_server_root($block, $conf, $rand_ports);
    return (start_nginx_or_bail($block), 1);
}

# Stops the running nginx and lays out a clean server root with this
# block's nginx.conf and user files.
sub fresh_server_root {
    my ($block, $conf, $rand_ports) = @_;
    my $name = $block->name;

    shutdown_nginx($name);
    eval { reset_server_root($ServRoot); 1 } or bail_out("$name - $@");
    write_block_user_files($block, $rand_ports);

    open my $out, '>', $ConfFile
        or bail_out("$name - Can't open $ConfFile for writing: $!");
    print $out $conf;
    close $out or bail_out("$name - Can't write $ConfFile: $!");
}

sub start_nginx_or_bail {
    my ($block) = @_;
    my $name = $block->name;

    bail_out("$name - Cannot find the nginx executable in the PATH environment")
        unless can_run($NginxBinary);
    wait_port_free($ServerAddr, $ServerPort, 5)
        or bail_out("$name - port $ServerPort is already in use by another "
                    . "process");

    my @cmd = nginx_command();
    warn "starting nginx: @cmd\n" if $Verbose;

    my $r = start_nginx(cmd => \@cmd, addr => $ServerAddr, port => $ServerPort,
                        wait => $UseValgrind ? 120 : 10);
    return 0 if $r->{pid};

    if ($ENV{TEST_NGINX_IGNORE_MISSING_DIRECTIVES}
        && (slurp($ErrLogFile) // '') =~ /\[emerg\] \S+?: unknown directive "([^"]+)"/) {
        return "the lack of directive $1";
    }

    my $why = $r->{timed_out} ? "not listening on port $ServerPort in time"
                              : "status code $r->{status}";
    bail_out("$name - Cannot start nginx using command \"@cmd\" ($why).");
}

sub shutdown_nginx {
    my ($name) = @_;
    if (nginx_pid()) {
        # valgrind's leak check at exit can take a while
        stop_nginx(grace => $UseValgrind ? 60 : $Timeout, name => $name);
    } else {
        kill_stale_nginx($PidFile);
    }
}

sub nginx_command {
    my @nginx = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);

    # Start-up errors ("[emerg] unknown directive ...") go to nginx's
    # compiled-in log, which is stderr for Debian's nginx but
    # logs/error.log for the OpenResty builds upstream is used with.  -e
    # (nginx >= 1.19.5) sends them to error.log here too, so must_die /
    # error_log checks and TEST_NGINX_IGNORE_MISSING_DIRECTIVES see them;
    # nginx still copies them to stderr.
    splice @nginx, 1, 0, '-e', $ErrLogFile
        if defined $NginxVersion && $NginxVersion >= 1.019005;

    return @nginx unless $UseValgrind;

    my @opts;
    if ($UseValgrind =~ /^\d+$/) {
        @opts = qw(--num-callers=100 -q --tool=memcheck --leak-check=full
                   --show-possibly-lost=no --gen-suppressions=all);
        my $supp = valgrind_suppressions();
        push @opts, "--suppressions=$supp" if $supp;
    } else {
        @opts = ('-q', split ' ', $UseValgrind);
    }
    push @opts, "--log-file=$LogDir/valgrind.%p.log"
        unless grep { /^--log-(?:file|fd|socket)=/ } @opts;

    return ('valgrind', @opts, @nginx);
}

sub valgrind_suppressions {
    my $env = $ENV{TEST_NGINX_VALGRIND_SUPP};
    if (defined $env && $env ne '') {
        return File::Spec->rel2abs($env) if -f $env;
        warn "WARNING: TEST_NGINX_VALGRIND_SUPP file $env not found\n";
    }
    for my $f ('t/valgrind.suppress', 'valgrind.suppress') {
        return File::Spec->rel2abs($f) if -f $f;
    }
    return undef;
}

# Under valgrind nginx is stopped after every block so that leaks are
# reported per block.  Any report (apart from valgrind's "Warning:" lines)
# is appended to error.log and fails the block with one extra test.
sub finish_valgrind_block {
    my ($name) = @_;
    shutdown_nginx($name);

    my @files = sort glob("$LogDir/valgrind.*.log");
    my $report = join '', map { slurp($_) // '' } @files;
    my @real = grep { /\S/ && !/^==\d+==\s*(?:Warning:.*)?$/ }
               split /^/m, $report;
    return unless @real;

    if (open my $out, '>>', $ErrLogFile) {
        print $out "\n=== valgrind report for $name\n$report";
        close $out;
    }
    fail_extra("$name - valgrind reported errors (@files)");
    Test::More::diag($report);
}

sub write_block_user_files {
    my ($block, $rand_ports) = @_;
    my $files = $block->user_files or return;
    my $name = $block->name;
    my $expand = sub {
        expand_env_in_text($_[0], $rand_ports, $ServerAddr, $ServerPort);
    };
    eval { write_user_files($HtmlDir, $files, $expand); 1 }
        or bail_out("$name - $@");
}

sub build_nginx_conf {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;
    my %part = map {
        $_ => expand_or_bail(scalar $block->$_, $name, $rand_ports) // ''
    } qw(main_config http_config post_main_config);

    my $listen = $ServerAddr =~ /:/ ? "[$ServerAddr]:$ServerPort"
                                    : "$ServerAddr:$ServerPort";

    return render_nginx_conf(
        load_modules       => [split ' ', $LoadModules // ''],
        workers            => $Workers,
        master             => $MasterProcessEnabled,
        error_log          => $block->error_log_file || $ErrLogFile,
        log_level          => $LogLevel,
        pid_file           => $PidFile,
        env                => \@EnvToNginx,
        main_config        => $part{main_config},
        http_config        => $part{http_config},
        post_main_config   => $part{post_main_config},
        access_log         => $AccLogFile,
        listen             => $listen,
        server_name        => $block->server_name // $ServerName,
        preamble           => $ConfigPreamble,
        config             => $config // '',
        root_dir           => $NoRootLocation ? undef : $HtmlDir,
        worker_connections => $WorkerConnections,
        event_type         => $ENV{TEST_NGINX_EVENT_TYPE},
        # As upstream: when tests run as root, workers run as root too so
        # they can read the server root.
        user               => $WorkerUser // ($> == 0 ? 'root' : undef),
    );
}

sub expand_or_bail {
    my ($text, $name, $rand_ports) = @_;
    my $out = eval {
        expand_env_in_text($text, $rand_ports, $ServerAddr, $ServerPort);
    };
    bail_out("$name - $@") if $@;
    return $out;
}

# ---- helpers -------------------------------------------------------------

sub reject_unsupported_sections {
    my ($block) = @_;
    for my $s (@UnsupportedSections) {
        next unless defined $block->$s;
        bail_out($block->name . " - --- $s is not supported by the bundled "
                 . "Test::Nginx::Socket subset (t/lib); install upstream "
                 . "Test::Nginx to run this test");
    }
}

sub run_init_code {
    my ($block) = @_;
    my $code = $block->init or return;
    eval_user_code($code);
    bail_out($block->name . " - init failed: $@") if $@;
}

# Code from the test file (init, skip_eval) runs in package main, where
# the test script's own variables live.
sub eval_user_code {
    my ($code) = @_;
    package main;
    no strict;
    no warnings;
    return eval $code;
}

sub read_nginx_version {
    my $out = capture_output($NginxBinary, '-V');
    if (!defined $out || $? != 0) {
        bail_out("Failed to get the version of the Nginx in PATH: "
                 . ($out // ''));
    }
    if ($out =~ m{built with OpenSSL (\d+)\.(\d+)\.(\d+)([a-z])?}s) {
        $OpenSSLVersion = openssl_canon_version($1, $2, $3, $4);
    }
    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s
        || $out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}s) {
        $NginxRawVersion = "$1.$2.$3";
        $NginxVersion = canon_version($1, $2, $3);
        return;
    }
    bail_out("Failed to parse the output of \"nginx -V\": $out\n");
}

# stdout and stderr of a command, without going through a shell.
sub capture_output {
    my (@cmd) = @_;
    my $pid = open(my $fh, '-|');
    return undef unless defined $pid;
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        { exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh>;
    close $fh;
    return $out;
}

sub can_run {
    my ($cmd) = @_;
    return -f $cmd && -x _ ? $cmd : undef if $cmd =~ m{/};
    for my $dir (split /:/, $ENV{PATH} // '') {
        next if $dir eq '';
        my $abs = "$dir/$cmd";
        return $abs if -f $abs && -x _;
    }
    return undef;
}

sub slurp {
    my ($file) = @_;
    open my $in, '<', $file or return undef;
    local $/;
    my $data = <$in>;
    close $in;
    return $data;
}

sub append_to_total_error_log {
    my ($name) = @_;
    my $total = $ENV{TEST_NGINX_ERROR_LOG} or return;
    return unless -s $ErrLogFile;
    open my $out, '>>', $total
        or bail_out("Failed to append test case title to $total: $!");
    print $out "\n=== $0 $name\n", slurp($ErrLogFile) // '';
    close $out;
}

# ---- cleanup: nginx must never outlive the test script -------------------

my $OwnerPid = $$;    # forked children (e.g. a test's helper) must not clean

sub cleanup () {
    $_->() for @CleanupHandlers;
    shutdown_nginx('cleanup') if nginx_pid();
}

# Ctrl-C / kill: stop nginx, then die of the same signal.  A handler the
# test script installed itself is left alone.
sub install_signal_handlers {
    for my $sig (qw(INT TERM HUP)) {
        my $cur = $SIG{$sig};
        next if ref $cur || (defined $cur && $cur eq 'IGNORE');
        $SIG{$sig} = sub {
            cleanup() if $$ == $OwnerPid;
            $SIG{$sig} = 'DEFAULT';
            kill $sig, $$;
        };
    }
}

END {
    if ($$ == $OwnerPid) {
        local $?;    # keep Test::Builder's exit status
        cleanup();
        remove_tree($ServRoot)
            if $Randomize && $ServRoot =~ m{/t/servroot_\d+$};
    }
}

1;
