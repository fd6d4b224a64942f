package H2Client;

# Drives t/lib/h2client.py, one HTTP/2 connection (h2c, prior knowledge)
# whose streams a suite opens and resets one by one.  Every wait is
# bounded.

use strict;
use warnings;

use File::Basename qw(dirname);
use IO::Select;
use IPC::Open2 qw(open2);
use JSON::PP;
use Time::HiRes qw(time);

# Debian's python3 (python3-h2), not whatever python3 comes first in PATH.
sub python { -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3' }

# Whether the client can run here.
sub available {
    my $py = python();
    return system("$py -c 'import h2' 2>/dev/null") == 0;
}

sub new {
    my ($class, $port) = @_;
    my $script = dirname(__FILE__) . '/h2client.py';
    my ($out, $in);
    my $pid = open2($out, $in, python(), $script, $port);
    $in->autoflush(1);
    my $self = bless { pid => $pid, out => $out, in => $in, buf => '',
                       events => [], ended => {} }, $class;
    $self->wait_event(sub { $_[0]{ev} eq 'ready' }, 10)
        or die "h2client did not start";
    return $self;
}

sub send_cmd {
    my ($self, $line) = @_;
    print { $self->{in} } "$line\n";
}

sub open_stream {
    my ($self, $name, $method, $path, $body) = @_;
    $self->send_cmd(join ' ', 'open', $name, $method, $path,
        defined $body ? $body : ());
    $self->wait_event(sub { $_[0]{ev} eq 'opened' && $_[0]{name} eq $name },
        5) or die "h2client: stream $name not opened";
}

sub reset_stream {
    my ($self, $name) = @_;
    $self->send_cmd("reset $name");
    $self->wait_event(sub { $_[0]{ev} eq 'resetsent'
        && $_[0]{name} eq $name }, 5) or die "h2client: reset $name failed";
}

# Reads events until one matches or the timeout passes; every event is
# kept in {events}; ended streams in {ended}{NAME}.
sub wait_event {
    my ($self, $match, $timeout) = @_;
    for my $ev (@{ $self->{events} }) {
        return $ev if !$ev->{seen} && $match->($ev) && ($ev->{seen} = 1);
    }
    my $sel = IO::Select->new($self->{out});
    my $deadline = time + $timeout;
    while ((my $left = $deadline - time) > 0) {
        while ($self->{buf} =~ s/^(.*)\n//) {
            my $ev = decode_json($1);
            push @{ $self->{events} }, $ev;
            $self->{ended}{ $ev->{name} } = $ev if $ev->{ev} eq 'end';
            if ($match->($ev)) {
                $ev->{seen} = 1;
                return $ev;
            }
        }
        next unless $sel->can_read($left);
        my $n = sysread $self->{out}, my $chunk, 65536;
        return undef unless $n;
        $self->{buf} .= $chunk;
    }
    return undef;
}

# The `end` event of stream NAME, waiting up to TIMEOUT seconds.
sub wait_end {
    my ($self, $name, $timeout) = @_;
    return $self->{ended}{$name} if $self->{ended}{$name};
    return $self->wait_event(sub { $_[0]{ev} eq 'end'
        && $_[0]{name} eq $name }, $timeout);
}

sub close {
    my ($self) = @_;
    return unless $self->{pid};
    $self->send_cmd('quit');
    close $self->{in};
    waitpid $self->{pid}, 0;
    $self->{pid} = undef;
}

sub DESTROY { $_[0]->close }

1;
