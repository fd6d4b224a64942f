package Test::Nginx::Subset::Server;

# Starts and stops the nginx under test for the bundled Test::Nginx::Socket.
#
# Upstream runs nginx with "daemon on" and finds it again through the pid
# file.  Here nginx runs with "daemon off" as a direct child of the test
# script, in a process group of its own.  That lets us
#   * reap it (PID 1 in containers often does not reap orphans, and a
#     zombie still answers kill(0)),
#   * notice at once when it exits during start-up (bad config), and
#   * kill master and workers together when a graceful stop hangs.
# On Linux the child also asks the kernel to send it SIGTERM when the test
# script dies, so even a SIGKILLed test run leaves no nginx behind.
#
# Every wait loop here has a deadline.

use strict;
use warnings;

use Exporter 'import';
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use IO::Socket::INET ();
use Config ();

our @EXPORT_OK = qw(start_nginx stop_nginx nginx_pid port_is_listening
                    wait_port_free kill_stale_nginx);

my $Child;    # pid of the running nginx (or valgrind wrapping it)

sub nginx_pid { $Child }

# Forks and execs @$cmd, then waits up to $o{wait} seconds until either the
# port is listening or the child has exited.  Returns a hash ref:
#   { pid => N }                   nginx is up
#   { exited => 1, status => $? }  it exited (config error, must_die, ...)
#   { timed_out => 1 }             neither happened; the child was killed
sub start_nginx {
    my (%o) = @_;
    die "nginx is already running (pid $Child)\n" if $Child;

    my $pid = fork;
    die "fork() failed: $!\n" unless defined $pid;
    _exec_child($o{cmd}) if $pid == 0;

    my $deadline = time + $o{wait};
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            return { exited => 1, status => $? };
        }
        if (port_is_listening($o{addr}, $o{port})) {
            $Child = $pid;
            return { pid => $pid };
        }
        sleep 0.01;
    }

    _kill_group($pid);
    return { timed_out => 1 };
}

sub _exec_child {
    my ($cmd) = @_;
    setpgrp(0, 0);
    _die_with_parent();
    open STDIN,  '<', '/dev/null';
    open STDOUT, '>', '/dev/null';    # nginx prints nothing useful there
    # stderr stays attached so start-up errors show up in the prove output.
    { exec { $cmd->[0] } @$cmd; }
    print STDERR "failed to execute $cmd->[0]: $!\n";
    POSIX::_exit(127);    # skip END blocks inherited from the test script
}

# prctl(PR_SET_PDEATHSIG, SIGTERM); best effort, Linux only.  SIGTERM makes
# an nginx master stop its workers before exiting.
sub _die_with_parent {
    return unless $^O eq 'linux';
    my %sys_prctl = ('x86_64' => 157, 'aarch64' => 167, 'i386' => 172,
                     'i686' => 172);
    my ($arch) = $Config::Config{archname} =~ /^([^-]+)/;
    my $nr = $sys_prctl{$arch // ''} or return;
    syscall($nr, 1, 15);
}

# Asks nginx to quit gracefully (SIGQUIT), waits up to $grace seconds, then
# SIGKILLs the whole process group.  Returns the wait status, or undef when
# nothing was running.
sub stop_nginx {
    my (%o) = @_;
    my $pid = $Child or return undef;
    undef $Child;

    kill 'QUIT', $pid;
    my $status = _wait_child($pid, $o{grace} // 3);
    if (!defined $status) {
        warn "$o{name} - timeout when waiting for the process $pid to exit\n"
            if $o{name};
        kill 'KILL', -$pid;
        $status = _wait_child($pid, 5);
    }

    # Workers outlive their master only if it crashed; do not let them
    # keep the port.
    _kill_group($pid) if kill 0, -$pid;
    return $status;
}

sub _wait_child {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    while (1) {
        my $got = waitpid($pid, WNOHANG);
        return $? if $got == $pid;
        return 0 if $got < 0;    # not our child any more
        return undef if time >= $deadline;
        sleep 0.01;
    }
}

sub _kill_group {
    my ($pid) = @_;
    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    _wait_child($pid, 2);
}

# True when something listens on TCP port $port.  Reads /proc/net/tcp{,6}
# rather than connecting: a probe connection would show up in nginx's
# error log and shift its connection counter, which tests may look at.
sub port_is_listening {
    my ($addr, $port) = @_;
    my $hex = sprintf ':%04X', $port;
    my $have_proc;

    for my $table ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $table or next;
        $have_proc = 1;
        while (my $line = <$in>) {
            # "  0: 0100007F:07C0 00000000:0000 0A ..." (0A = LISTEN)
            my (undef, $local, undef, $state) = split ' ', $line;
            return 1 if defined $state && $state eq '0A'
                        && substr($local, -5) eq $hex;
        }
    }
    return 0 if $have_proc;

    # No /proc (not Linux): fall back to a plain connect.
    my $sock = IO::Socket::INET->new(PeerAddr => $addr, PeerPort => $port,
                                     Proto => 'tcp', Timeout => 0.2);
    return 0 unless $sock;
    close $sock;
    return 1;
}

sub wait_port_free {
    my ($addr, $port, $secs) = @_;
    my $deadline = time + $secs;
    while (port_is_listening($addr, $port)) {
        return 0 if time >= $deadline;
        sleep 0.05;
    }
    return 1;
}

# An nginx left behind by an earlier, killed run (ours or upstream's, which
# daemonizes) would keep the port.  Stop it if the pid file names a live
# process that really is nginx.
sub kill_stale_nginx {
    my ($pid_file) = @_;
    open my $in, '<', $pid_file or return;
    my ($pid) = (<$in> // '') =~ /^(\d+)/;
    close $in;
    return unless $pid && $pid != $$ && _is_live_nginx($pid);

    warn "WARNING: stopping nginx $pid left over from an earlier run\n";
    kill 'QUIT', $pid;
    my $deadline = time + 3;
    sleep 0.05 while _is_live_nginx($pid) && time < $deadline;
    kill 'KILL', $pid if _is_live_nginx($pid);
}

sub _is_live_nginx {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    open my $stat, '<', "/proc/$pid/stat" or return 1;    # no /proc: trust kill
    my ($state) = (<$stat> // '') =~ /\)\s+(\S)/;
    return 0 if defined $state && $state eq 'Z';
    open my $cmd, '<', "/proc/$pid/cmdline" or return 0;
    return ((<$cmd> // '') =~ /nginx/) ? 1 : 0;
}

1;
