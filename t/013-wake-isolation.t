# Wake-ups between workers belong to one nginx instance: they cannot
# collide with another instance, whatever the PID namespaces, no other uid
# can bind, reach or flood them, and a failure to set them up leaves every
# worker serving (one [alert], then the 1 s safety timer).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h EACCES);
use Time::HiRes qw(time sleep);
use AsyncNginx;

plan skip_all => 'needs root (unshare, setpriv)' if $> != 0;
for my $tool (qw(unshare setpriv)) {
    plan skip_all => "needs $tool"
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
my $nginx_v = `@{[AsyncNginx::binary()]} -V 2>&1`;
plan skip_all => 'needs nginx --with-debug (the wake-up debug line)'
    unless $nginx_v =~ /--with-debug/;

# An uid that is neither root nor the workers' (they run as root here).
my $stranger = 4242;

# The instances' TMPDIR: a sticky, world-writable directory like /tmp, so
# that a stranger reaches its entries and meets only the permissions of the
# instance's own directory.
my $tmpdir = tempdir('/tmp/async-wake-t.XXXXXX', CLEANUP => 1);
chmod 01777, $tmpdir or die "chmod $tmpdir: $!";

sub queue_http {
    return <<'EOF';
    async_queue_zone zone=q:1m active=1 length=100 timeout=30s;
    log_format queue '$arg_i $pid $status $async_queue_status';
    server {
        listen 127.0.0.1:$PORT reuseport;
        location /slow {
            access_log logs/queue.log queue;
            async_queue q;
            echo_sleep 0.05;
            echo "i=$arg_i";
        }
    }
EOF
}

sub wakeups_received {
    my ($ng) = @_;
    my @n = $ng->error_log =~ /async wake-up: (\d+) received/g;
    return scalar grep { $_ > 0 } @n;
}

# Rounds of queued requests until a datagram woke a worker (at most
# $rounds): requests land on either worker (reuseport), and a slot released
# by one worker to a request parked in the other needs a wake-up.
sub exercise {
    my ($ng, $rounds, $until_woken) = @_;
    my ($sent, $ok) = (0, 0);
    for my $round (1 .. $rounds) {
        my @res = $ng->parallel(
            [ map { { path => "/slow?i=$round.$_" } } 1 .. 4 ],
            gap => 0.01, timeout => 20);
        $sent += @res;
        $ok += grep { $_->{status} == 200 } @res;
        last if $until_woken && wakeups_received($ng) > 0;
    }
    my %pids = map { (split ' ')[1] => 1 } $ng->log_file('queue.log');
    return ($sent, $ok, scalar keys %pids);
}

sub no_fatal_exit {
    my ($ng, $title) = @_;
    my @bad = grep { /exited with fatal code|exited on signal/ }
        split /\n/, $ng->error_log;
    is(scalar @bad, 0, "$title: no worker exited") or diag join "\n", @bad;
}

sub instance_dirs { my @d = glob "$tmpdir/nginx-async-*"; return @d }

# Runs perl as the stranger; returns its output lines.
sub as_stranger {
    my ($script, @args) = @_;
    my @cmd = ('setpriv', "--reuid=$stranger", "--regid=$stranger",
        '--clear-groups', $^X, '-e', $script, @args);
    open my $fh, '-|', @cmd or die "setpriv: $!";
    my @out = <$fh>;
    close $fh;
    chomp @out;
    return @out;
}

# --- the instance's directory ------------------------------------------------

subtest 'one private directory per instance, kept across reloads' => sub {
    local $ENV{TMPDIR} = $tmpdir;
    my $ng = AsyncNginx->new(name => 'wake-dir', workers => 2,
        log_level => 'debug', http => queue_http());
    $ng->start;
    my @dirs = instance_dirs();
    is(scalar @dirs, 1, 'one directory in TMPDIR') or diag "@dirs";
    my $dir = $dirs[0] // '';
    my @st = lstat $dir;
    ok(-d _ && !-l _, 'a real directory');
    is(sprintf('%04o', $st[2] & 07777), '0700', 'mode 0700');
    is($st[4], 0, "owned by the workers' user (root here)");
    my @workers = $ng->worker_pids;
    ok(-S "$dir/$_", "worker $_ has its socket") for @workers;

    my ($sent, $ok, $npids) = exercise($ng, 20, 1);
    is($ok, $sent, 'every queued request served');
    ok(wakeups_received($ng) > 0, 'a worker was woken by a datagram')
        or diag "served by $npids worker(s)";

    my @new = $ng->reload;
    is(scalar @new, 2, 'new workers after the reload');
    is_deeply([instance_dirs()], [$dir], 'the same directory after a reload');
    ok(-S "$dir/$_", "new worker $_ has its socket") for @new;

    # a respawned worker binds its own name
    kill 'KILL', $new[0];
    my @after = $ng->wait_workers(2, 10);
    my ($respawned) = grep { $_ != $new[1] } @after;
    ok($respawned && -S "$dir/$respawned", 'a respawned worker has its socket');
    ($sent, $ok) = exercise($ng, 2, 0);
    is($ok, $sent, 'served after the respawn');

    $ng->stop;
    is(scalar(instance_dirs()), 0, 'the directory is gone once nginx exits');
    is(scalar(grep { !/signal 9/ } $ng->crash_lines), 0, 'no alert')
        or diag join "\n", $ng->crash_lines;
};

# --- two instances, separate PID namespaces, one network namespace -----------

my %in_namespace;
END { stop_in_pid_namespace($_) for grep { $_->{pid} } values %in_namespace }

# Starts nginx in a PID namespace of its own: there it is pid 1 and its
# workers get the same small pids as the other instance's.
sub start_in_pid_namespace {
    my ($ng) = @_;
    remove_tree($ng->root);
    $ng->write_config;
    my $conf = $ng->root . '/conf/nginx.conf';
    open my $in, '<', $conf or die $!;
    my $text = do { local $/; <$in> };
    close $in;
    # pid 1 of the namespace must stay: its exit would kill the namespace
    $text =~ s/daemon on;/daemon off;/ or die 'no daemon line';
    open my $out, '>', $conf or die $!;
    print $out $text;
    close $out;

    my $child = fork // die "fork: $!";
    if ($child == 0) {
        open STDOUT, '>', $ng->root . '/logs/stdout.log';
        open STDERR, '>&', \*STDOUT;
        exec 'unshare', '--pid', '--fork', '--mount-proc',
            AsyncNginx::binary(), '-p', $ng->root, '-c', 'conf/nginx.conf';
        exit 127;
    }
    # nginx's master is unshare's child
    my $master;
    my $deadline = time + 10;
    while (!$master && time < $deadline) {
        for my $stat (glob '/proc/[0-9]*/stat') {
            open my $fh, '<', $stat or next;
            my $line = <$fh> // next;
            my ($pid, $ppid) = $line =~ /^(\d+) \(.*?\) \S (\d+)/ or next;
            $master = $pid if $ppid == $child;
        }
        sleep 0.05 unless $master;
    }
    die 'no nginx master in the new PID namespace' unless $master;
    $ng->{pid} = $master;
    $ng->{unshare} = $child;
    $in_namespace{$child} = $ng;
    $ng->wait_port(10) or die 'nginx does not listen on ' . $ng->port;
    return $ng->wait_workers(2, 10);
}

sub stop_in_pid_namespace {
    my ($ng) = @_;
    $ng->stop;
    my $deadline = time + 10;
    while (time < $deadline && waitpid($ng->{unshare}, WNOHANG) == 0) {
        sleep 0.05;
    }
}

subtest 'two instances in separate PID namespaces share one network' => sub {
    local $ENV{TMPDIR} = $tmpdir;
    my @ng = map {
        local $ENV{TEST_NGINX_SERVER_PORT} = AsyncNginx->new->port + $_;
        AsyncNginx->new(name => "wake-ns$_", workers => 2,
            log_level => 'debug', http => queue_http());
    } 0, 1;
    my @workers = map { [ start_in_pid_namespace($_) ] } @ng;
    is(scalar @{ $workers[$_] }, 2, "instance $_ runs its two workers")
        for 0, 1;
    is(scalar(instance_dirs()), 2, 'each instance has its own directory');

    for my $i (0, 1) {
        my ($sent, $ok, $npids) = exercise($ng[$i], 20, 1);
        is($ok, $sent, "instance $i serves every queued request");
        ok(wakeups_received($ng[$i]) > 0,
            "instance $i: its workers wake each other")
            or diag "served by $npids worker(s)";
    }
    for my $i (0, 1) {
        is(scalar(my @w = $ng[$i]->worker_pids), 2, "instance $i kept its workers");
        no_fatal_exit($ng[$i], "instance $i");
        is(scalar($ng[$i]->crash_lines), 0, "instance $i: no alert")
            or diag join "\n", $ng[$i]->crash_lines;
    }
    stop_in_pid_namespace($_) for @ng;
    is(scalar(instance_dirs()), 0, 'both directories removed');
};

# --- a stranger ------------------------------------------------------------

my $attack = <<'EOF';
use strict;
use Socket;
my ($tmp, $dir, @pids) = @ARGV;
sub res { my ($ok) = @_; return $ok ? 'ok' : 0 + $! }
opendir(my $top, $tmp) ? print "tmpdir ok\n" : print "tmpdir ", 0 + $!, "\n";
print 'list ', res(opendir(my $d, $dir)), "\n";
socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or die "socket: $!";
print 'bind ', res(bind($s, pack_sockaddr_un("$dir/squat"))), "\n";
for my $p (@pids) {
    my $to = pack_sockaddr_un("$dir/$p");
    print "send $p ", res(defined send($s, 'w', 0, $to)), "\n";
    socket(my $c, AF_UNIX, SOCK_DGRAM, 0) or die;
    print "connect $p ", res(connect($c, $to)), "\n";
    my $sent = 0;
    for (1 .. 20000) { $sent++ if defined send($s, 'w', 0, $to) }
    print "flood $p $sent\n";
}
EOF

# The attack on the abstract names of before: bind the names of the next
# pids, as a reload's new workers would have taken them.
my $squat = <<'EOF';
use strict;
use Socket;
my ($from, $n) = @ARGV;
my @keep;
for my $pid ($from .. $from + $n) {
    socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or die "socket: $!";
    push @keep, $s if bind($s, pack_sockaddr_un("\0ngx_http_async/$pid"));
}
$| = 1;
print scalar(@keep), "\n";
sleep 60;
EOF

subtest 'a stranger can neither bind, reach nor flood the wake-ups' => sub {
    local $ENV{TMPDIR} = $tmpdir;
    my $ng = AsyncNginx->new(name => 'wake-stranger', workers => 2,
        log_level => 'debug', http => queue_http());
    $ng->start;
    my ($dir) = instance_dirs();
    my @workers = $ng->worker_pids;
    my %out = map { /^(\S+(?: \d+)?) (\S+)$/ ? ($1 => $2) : () }
        as_stranger($attack, $tmpdir, $dir, @workers);
    is($out{tmpdir}, 'ok', 'the stranger reaches TMPDIR itself');
    is($out{list}, EACCES, 'cannot list the directory (EACCES)');
    is($out{bind}, EACCES, 'cannot bind a name in it (EACCES)');
    for my $p (@workers) {
        is($out{"send $p"}, EACCES, "cannot send to worker $p (EACCES)");
        is($out{"connect $p"}, EACCES, "cannot connect to worker $p (EACCES)");
        is($out{"flood $p"}, 0, "no datagram of a flood reaches worker $p");
    }
    ok(!-e "$dir/squat", 'no name squatted');

    # squatting the old abstract names changes nothing any more
    my $last = do { open my $fh, '<', '/proc/sys/kernel/ns_last_pid'; <$fh> };
    chomp $last;
    my $squatter = open my $sq, '-|', 'setpriv', "--reuid=$stranger", "--regid=$stranger",
        '--clear-groups', $^X, '-e', $squat, $last + 1, 400
        or die "setpriv: $!";
    my $bound = <$sq>;
    chomp $bound;
    ok($bound > 0, "the stranger holds $bound abstract names");
    my @new = $ng->reload;
    is(scalar @new, 2, 'a reload still gets both workers');
    my ($sent, $ok) = exercise($ng, 20, 1);
    is($ok, $sent, 'every queued request served');
    ok(wakeups_received($ng) > 0, 'the new workers wake each other');
    kill 'KILL', $squatter;
    close $sq;
    no_fatal_exit($ng, 'after the squat');
    is(scalar($ng->crash_lines), 0, 'no alert') or diag join "\n", $ng->crash_lines;
    $ng->stop;
};

# --- failure to set up -------------------------------------------------------

subtest 'no directory: one [alert], and every worker still serves' => sub {
    local $ENV{TMPDIR} = "$tmpdir/missing/deeper";
    my $ng = AsyncNginx->new(name => 'wake-fail', workers => 2,
        log_level => 'debug', http => queue_http());
    $ng->start;
    is(scalar(my @w = $ng->worker_pids), 2, 'both workers run');
    my ($sent, $ok) = exercise($ng, 3, 0);
    is($ok, $sent, 'every queued request served (by the safety timer)');
    is(wakeups_received($ng), 0, 'no datagram: nothing to wake with');
    my @alerts = grep { /\[alert\]/ } split /\n/, $ng->error_log;
    is(scalar @alerts, 1, 'exactly one [alert]') or diag join "\n", @alerts;
    like($alerts[0] // '', qr/wake-up directory.*every 1s/,
        'it says what is lost');
    no_fatal_exit($ng, 'degraded');
    $ng->stop;
};

done_testing;
