package AsyncNginx;

# A small harness for the tests that do not fit Test::Nginx's data-driven
# format: many clients at once, killed workers, reloads, `nginx -t` errors.
# It starts the stock nginx (TEST_NGINX_BINARY) with the modules named in
# TEST_NGINX_LOAD_MODULES, in a server root of its own, on loopback only.
# Every wait is bounded in count and time.
#
# Valgrind: with TEST_NGINX_USE_VALGRIND set (as by `./build.sh test
# valgrind`) nginx runs under valgrind, the way the bundled
# Test::Nginx::Socket runs it: a non-numeric value is valgrind's option
# string; a number means memcheck with full leak checking and the
# suppressions of TEST_NGINX_VALGRIND_SUPP, else t/valgrind.suppress.
# Every process writes logs/valgrind.<pid>.log (workers are forks of the
# master, which valgrind follows); `stop` reads them once nginx has exited
# and fails the test file on any report (valgrind_errors).  The harness's
# own waits for start, reload and stop are much longer then; slow() tells
# suites that their pure timing assertions do not hold.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Path qw(make_path remove_tree);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my @started;

# valgrind's options, or () when not running under valgrind.
sub valgrind_options {
    my $v = $ENV{TEST_NGINX_USE_VALGRIND};
    return () unless $v;
    my @opts;
    if ($v =~ /^\d+$/) {
        @opts = qw(--num-callers=100 -q --tool=memcheck --leak-check=full
                   --show-possibly-lost=no --gen-suppressions=all);
        my $supp = valgrind_suppressions();
        push @opts, "--suppressions=$supp" if $supp;
    } else {
        @opts = ('-q', split ' ', $v);
    }
    return @opts;
}

sub valgrind_suppressions {
    my $env = $ENV{TEST_NGINX_VALGRIND_SUPP};
    if (defined $env && $env ne '') {
        return abs_path($env) if -f $env;
        warn "WARNING: TEST_NGINX_VALGRIND_SUPP file $env not found\n";
    }
    for my $f ('t/valgrind.suppress', 'valgrind.suppress') {
        return abs_path($f) if -f $f;
    }
    return undef;
}

# valgrind_options in list context: in scalar context its bare `return ()`
# is undef.
sub valgrind { my @opts = valgrind_options(); return @opts > 0 }

# True when nginx runs many times slower than usual (valgrind, sanitizers):
# suites use it only to skip or widen pure timing assertions.
sub slow { return valgrind() || !!$ENV{ASYNC_SANITIZER} }

# How much longer the harness waits for nginx itself under valgrind.
sub wait_factor { return valgrind() ? 20 : 1 }

sub new {
    my ($class, %args) = @_;
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    my $name = $args{name} || 'harness';
    my $base = $ENV{TEST_NGINX_SERVROOT} || abs_path('.') . '/t/servroot';
    my $self = bless {
        port    => $port,
        workers => $args{workers} // 2,
        http    => $args{http} // '',
        main    => $args{main} // '',
        events  => $args{events} // '',
        # error_log level: log_level, else TEST_NGINX_LOG_LEVEL (as the
        # bundled Test::Nginx::Socket), else info
        log_level => $args{log_level} // $ENV{TEST_NGINX_LOG_LEVEL} // 'info',
        root    => "$base-$name",
        pid     => undef,
    }, $class;
    return $self;
}

sub port { $_[0]{port} }
sub root { $_[0]{root} }
sub binary { $ENV{TEST_NGINX_BINARY} || 'nginx' }

sub modules {
    return grep { length } split /\s+/, ($ENV{TEST_NGINX_LOAD_MODULES} || '');
}

# The configuration text; $PORT in the http block is this harness's port.
sub config_text {
    my ($self, %over) = @_;
    my $http = $over{http} // $self->{http};
    my $workers = $over{workers} // $self->{workers};
    $http =~ s/\$PORT\b/$self->{port}/g;
    my $load = join '', map { "load_module $_;\n" } modules();
    my $user = $> == 0 ? "user root;\n" : '';
    return <<"EOF";
$load$user
worker_processes $workers;
daemon on;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log $self->{log_level};
worker_shutdown_timeout 10s;
$self->{main}

events {
    worker_connections 4096;
    $self->{events}
}

http {
    access_log logs/access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
$http
}
EOF
}

sub write_config {
    my ($self, %over) = @_;
    make_path(map { "$self->{root}/$_" } qw(conf logs tmp html));
    open my $fh, '>', "$self->{root}/conf/nginx.conf" or die $!;
    print $fh $self->config_text(%over);
    close $fh;
}

# `nginx -t` on a configuration: (exit code, output).
sub check_config {
    my ($self, %over) = @_;
    $self->write_config(%over);
    my $cmd = join ' ', binary(), '-p', $self->{root}, '-c', 'conf/nginx.conf',
        '-t', '2>&1';
    my $out = `$cmd`;
    return ($? >> 8, $out);
}

sub start {
    my ($self) = @_;
    $self->stop if $self->{pid};
    remove_tree($self->{root});
    die "port $self->{port} is already in use by another server\n"
        if $self->wait_port(0.01);
    $self->write_config;
    my @cmd = (binary(), '-p', $self->{root}, '-c', 'conf/nginx.conf');
    my @vg = valgrind_options();
    unshift @cmd, 'valgrind', @vg,
        "--log-file=$self->{root}/logs/valgrind.%p.log" if @vg;
    $self->{retired} = {};
    my $out = `@cmd 2>&1`;
    die "nginx failed to start (@cmd): $out" if $? != 0;
    my $f = wait_factor();
    $self->{pid} = $self->read_pid(5 * $f) or die "no nginx pid file";
    $self->{owner} = $$;
    push @started, $self;
    $self->wait_port(5 * $f) or die "nginx does not listen on $self->{port}";
    $self->wait_workers($self->{workers}, 5);
    return $self;
}

sub read_pid {
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        if (open my $fh, '<', "$self->{root}/logs/nginx.pid") {
            my $pid = <$fh>;
            return $1 if defined $pid && $pid =~ /(\d+)/;
        }
        sleep 0.05;
    }
    return undef;
}

sub wait_port {
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout;
    do {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $self->{port}, Timeout => 1);
        return 1 if $s;
        sleep 0.05 if $timeout > 0.05;
    } while (time < $deadline);
    return 0;
}

# Worker pids: the master's children that are not shutting down.  Under
# valgrind /proc shows valgrind's command line, not nginx's process title:
# every child counts then, except the workers a reload replaced.
sub worker_pids {
    my ($self) = @_;
    my $vg = valgrind();
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*?\) \S (\d+)/ or next;
        next unless $ppid == $self->{pid};
        if ($vg) {
            push @pids, $pid unless $self->{retired}{$pid};
            next;
        }
        open my $cmd, '<', "/proc/$pid/cmdline" or next;
        my $title = <$cmd> // '';
        push @pids, $pid if $title =~ /worker process/
            && $title !~ /is shutting down/;
    }
    return sort { $a <=> $b } @pids;
}

sub wait_workers {
    my ($self, $n, $timeout) = @_;
    my $deadline = time + $timeout * wait_factor();
    while (time < $deadline) {
        my @pids = $self->worker_pids;
        return @pids if @pids == $n;
        sleep 0.05;
    }
    return $self->worker_pids;
}

sub signal {
    my ($self, $sig) = @_;
    kill $sig, $self->{pid} if $self->{pid};
}

# Rewrites the configuration and reloads; returns once new workers run.
sub reload {
    my ($self, %over) = @_;
    my @old = $self->worker_pids;
    $self->{retired}{$_} = 1 for @old;
    $self->{http} = $over{http} if defined $over{http};
    $self->{workers} = $over{workers} if defined $over{workers};
    $self->write_config;
    $self->signal('HUP');
    my $deadline = time + 10 * wait_factor();
    while (time < $deadline) {
        my %old = map { $_ => 1 } @old;
        my @new = grep { !$old{$_} } $self->worker_pids;
        return @new if @new >= $self->{workers};
        sleep 0.05;
    }
    return;
}

# After a reload: waits until every replaced worker has exited (until then
# it may still accept a connection with the old configuration).
sub wait_retired {
    my ($self, $timeout) = @_;
    return wait_until(sub {
        !grep { -e "/proc/$_" } keys %{ $self->{retired} || {} };
    }, $timeout // 10);
}

# Stops nginx (QUIT, then KILL after 10 s, 60 s under valgrind, whose
# leak check at exit takes a while).  Under valgrind, a report in any
# process's log then fails the test file.
sub stop {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    kill 'QUIT', $pid;
    my $grace = valgrind() ? 60 : 10;
    my $deadline = time + $grace;
    while (time < $deadline && kill 0, $pid) {
        sleep 0.05;
    }
    my $killed = kill 0, $pid;
    kill 'KILL', $pid if $killed;
    $self->{pid} = undef;
    return unless valgrind();

    # the master has exited; its children may still be finishing the leak
    # check of a worker it no longer waited for
    $deadline = time + ($killed ? 5 : 30);
    while (time < $deadline && $self->valgrind_busy) {
        sleep 0.1;
    }
    require Test::More;
    Test::More::fail("nginx ($self->{root}) did not stop within ${grace}s "
        . "under valgrind; killed") if $killed;
    my $report = $self->valgrind_errors;
    if (length $report) {
        Test::More::fail("valgrind reported errors ($self->{root}/logs/"
            . "valgrind.*.log)");
        Test::More::diag($report);
    }
}

# Whether a process of this server root still runs under valgrind.
sub valgrind_busy {
    my ($self) = @_;
    my $log = "--log-file=$self->{root}/logs/valgrind.";
    for my $cmdline (glob '/proc/[0-9]*/cmdline') {
        open my $fh, '<', $cmdline or next;
        local $/;
        my $args = <$fh> // next;
        return 1 if index($args, "$log%p.log\0") >= 0;
    }
    return 0;
}

# Every valgrind report in logs/valgrind.*.log other than valgrind's own
# "Warning:" lines, or '' when there is none.  The logs live in the server
# root, which the next start wipes: read them after stop.
sub valgrind_errors {
    my ($self) = @_;
    my $report = '';
    for my $file (sort glob "$self->{root}/logs/valgrind.*.log") {
        open my $fh, '<', $file or next;
        my @real = grep { /\S/ && !/^==\d+==\s*(?:Warning:.*)?$/ } <$fh>;
        $report .= "--- $file\n" . join('', @real) if @real;
    }
    return $report;
}

sub error_log {
    my ($self) = @_;
    open my $fh, '<', "$self->{root}/logs/error.log" or return '';
    local $/;
    return <$fh>;
}

sub log_file {
    my ($self, $name) = @_;
    open my $fh, '<', "$self->{root}/logs/$name" or return ();
    my @lines = <$fh>;
    chomp @lines;
    return @lines;
}

# Crashes and alerts that must never appear.
sub crash_lines {
    my ($self) = @_;
    return grep { /\[alert\]|\[emerg\]|signal 11|signal 6|core dumped|AddressSanitizer/ }
        split /\n/, $self->error_log;
}

# --- HTTP -----------------------------------------------------------------

sub connect_client {
    my ($self) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $self->{port}, Proto => 'tcp', Blocking => 1,
        Timeout => 5);
}

sub parse_response {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    return { status => 0, headers => {}, body => '', raw => $raw }
        unless defined $head && $head =~ m{^HTTP/1\.\d (\d+)};
    my $status = $1;
    my %headers;
    for my $line (split /\r\n/, $head) {
        $headers{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*)$/;
    }
    $body //= '';
    if (($headers{'transfer-encoding'} // '') =~ /chunked/i) {
        my $decoded = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $decoded .= substr($body, 0, $len, '');
            $body =~ s/^\r\n//;
        }
        $body = $decoded;
    }
    return { status => $status, headers => \%headers, body => $body,
             raw => $raw };
}

# One request; returns {status, headers, body, time}.
sub request {
    my ($self, $method, $path, %opt) = @_;
    my @results = $self->parallel([ { method => $method, path => $path,
        %opt } ], timeout => $opt{timeout} // 10);
    return $results[0];
}

sub get { my ($self, $path, %opt) = @_; $self->request('GET', $path, %opt) }

# Sends requests over separate connections, in list order, `gap` seconds
# apart, and collects every response (or a timeout) within `timeout`.
# Each request: {method, path, headers => {..}, body, close_after => secs}.
# Results come back in list order with sent/done times.
sub parallel {
    my ($self, $requests, %opt) = @_;
    my $timeout = $opt{timeout} // 10;
    my $gap = $opt{gap} // 0;
    my $sel = IO::Select->new;
    my (@state, %by_fd);

    for my $i (0 .. $#$requests) {
        my $req = $requests->[$i];
        my $s = $self->connect_client or die "connect: $!";
        my $method = $req->{method} // 'GET';
        my $body = $req->{body} // '';
        my $hdrs = "Host: localhost\r\nConnection: close\r\n";
        $hdrs .= "Content-Length: " . length($body) . "\r\n"
            if length $body || $method eq 'POST';
        while (my ($k, $v) = each %{ $req->{headers} || {} }) {
            $hdrs .= "$k: $v\r\n";
        }
        print $s "$method $req->{path} HTTP/1.1\r\n$hdrs\r\n$body";
        $s->blocking(0);
        $state[$i] = { sock => $s, raw => '', sent => time,
                       close_at => defined $req->{close_after}
                           ? time + $req->{close_after} : undef };
        $by_fd{fileno $s} = $i;
        $sel->add($s);
        sleep $gap if $gap && $i < $#$requests;
    }

    my $deadline = time + $timeout;
    while ($sel->count && time < $deadline) {
        my $now = time;
        for my $st (@state) {
            next unless $st->{close_at} && !$st->{done} && $now >= $st->{close_at};
            $sel->remove($st->{sock});
            close $st->{sock};
            $st->{done} = $now;
            $st->{aborted} = 1;
        }
        for my $s ($sel->can_read(0.02)) {
            my $i = $by_fd{fileno $s};
            my $n = sysread $s, my $buf, 65536;
            if ($n) {
                $state[$i]{raw} .= $buf;
                next;
            }
            next if !defined $n && $!{EAGAIN};
            $sel->remove($s);
            close $s;
            $state[$i]{done} = time;
        }
    }
    my @out;
    for my $st (@state) {
        if (!$st->{done}) {
            $sel->remove($st->{sock});
            close $st->{sock};
        }
        my $r = parse_response($st->{raw});
        $r->{sent} = $st->{sent};
        $r->{done} = $st->{done};
        $r->{time} = $st->{done} ? $st->{done} - $st->{sent} : undef;
        $r->{timed_out} = !$st->{done};
        $r->{aborted} = $st->{aborted} // 0;
        push @out, $r;
    }
    return @out;
}

# The module's status document, decoded.
sub status {
    my ($self, $path) = @_;
    my $r = $self->get($path // '/status');
    return undef unless $r->{status} == 200;
    return eval { decode_json($r->{body}) };
}

# Waits for a state instead of sleeping for it: calls $cond every 50 ms
# until it returns true or $timeout seconds (times wait_factor) pass.
# Returns the last value of $cond.
sub wait_until {
    my ($cond, $timeout, $interval) = @_;
    my $deadline = time + ($timeout // 5) * wait_factor();
    while (1) {
        my $v = $cond->();
        return $v if $v || time >= $deadline;
        sleep($interval // 0.05);
    }
}

# Polls the status until the zone is idle (active 0, waiting 0).
sub wait_zone_idle {
    my ($self, $zone, $timeout) = @_;
    my $deadline = time + ($timeout // 5) * wait_factor();
    my $z;
    while (time < $deadline) {
        my $st = $self->status or next;
        $z = $st->{queue_zones}{$zone};
        return $z if $z && $z->{active} == 0 && $z->{waiting} == 0;
        sleep 0.05;
    }
    return $z;
}

# Only the process that started nginx stops it; a forked helper must not.
END {
    $_->stop for grep { $_->{pid} && $_->{owner} == $$ } @started;
}

1;
