# The redis-server of the store=redis suites (t/070, t/071, t/072): run in
# the foreground on 127.0.0.1:PORT, no persistence, its log in
# DIR/redis.log; start waits until it listens, stop wakes it first (a test
# may have stalled it with SIGSTOP) and reaps it.
package RedisServer;
use strict;
use warnings;
use IO::Socket::INET;
use AsyncNginx;

sub installed { return -x '/usr/bin/redis-server' }

# port, dir, and args: extra redis-server arguments for every start
sub new {
    my ($class, %opt) = @_;
    return bless { port => $opt{port}, dir => $opt{dir},
        args => $opt{args} // [], pid => undef }, $class;
}

sub port { $_[0]{port} }
sub pid { $_[0]{pid} }

# extra arguments for this start only
sub start {
    my ($self, @extra) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$self->{dir}/redis.log";
        open STDERR, '>&', \*STDOUT;
        exec 'redis-server', '--port', $self->{port}, '--bind', '127.0.0.1',
            '--save', '', '--appendonly', 'no', '--dir', $self->{dir},
            '--daemonize', 'no', @{ $self->{args} }, @extra;
        exit 127;
    }
    $self->{pid} = $pid;
    AsyncNginx::wait_until(sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $self->{port})
    }, 5) or die "redis-server does not listen on $self->{port}";
    return $self;
}

sub stop {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    kill 'CONT', $pid;
    kill 'TERM', $pid;
    waitpid $pid, 0;
    $self->{pid} = undef;
}

# An nginx node with a store=redis zone "jobs" behind /jobs/: its job
# locations answer 503 until it has connected, then 404 for an unknown id.
sub node_ready {
    my ($ng) = @_;
    return AsyncNginx::wait_until(sub {
        $ng->get('/jobs/AAAAAAAAAAAAAAAAAAAAAA')->{status} == 404
    }, 5);
}

1;
