package WebDriver;

# A minimal W3C WebDriver client over core Perl (HTTP::Tiny, JSON::PP):
# starts chromedriver on loopback, opens one headless Chromium session in a
# fresh profile, and offers the few commands the browser test needs. Every
# wait is bounded.

use strict;
use warnings;

use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

sub chromium { -x '/usr/bin/chromium' ? '/usr/bin/chromium' : undef }
sub chromedriver { -x '/usr/bin/chromedriver' ? '/usr/bin/chromedriver' : undef }

# new(port => P, log => FILE): chromedriver on 127.0.0.1:P and a session.
sub new {
    my ($class, %args) = @_;
    my $self = bless { port => $args{port}, log => $args{log},
        http => HTTP::Tiny->new(timeout => 60) }, $class;
    $self->{profile} = tempdir('async-chromium-XXXXXX', TMPDIR => 1,
        CLEANUP => 1);

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $args{log} or die;
        open STDERR, '>&', \*STDOUT or die;
        exec chromedriver(), "--port=$args{port}", '--allowed-ips=127.0.0.1',
            '--allowed-origins=127.0.0.1';
        exit 127;
    }
    $self->{pid} = $pid;
    $self->{owner} = $$;

    my $deadline = time + 20;
    while (time < $deadline) {
        my $r = $self->{http}->get("http://127.0.0.1:$args{port}/status");
        last if $r->{success} && eval { decode_json($r->{content})->{value}{ready} };
        die "chromedriver exited, see $args{log}\n"
            if waitpid($pid, WNOHANG) == $pid;
        sleep 0.1;
    }

    my $caps = { capabilities => { alwaysMatch => {
        browserName => 'chrome',
        'goog:chromeOptions' => {
            binary => chromium(),
            args => [ '--headless', '--no-sandbox', '--disable-gpu',
                '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync',
                '--disable-dev-shm-usage', '--window-size=900,760',
                "--user-data-dir=$self->{profile}" ],
        },
    } } };
    my $v = $self->cmd(POST => '/session', $caps);
    $self->{session} = $v->{sessionId} or die "no session: " . encode_json($v);
    return $self;
}

# One command; returns its "value", dies with WebDriver's error.
sub cmd {
    my ($self, $method, $path, $body) = @_;
    my $url = "http://127.0.0.1:$self->{port}$path";
    my %opt = (headers => { 'Content-Type' => 'application/json' });
    $opt{content} = encode_json($body) if defined $body;
    my $r = $self->{http}->request($method, $url, \%opt);
    my $json = eval { decode_json($r->{content}) };
    die "WebDriver $method $path: $r->{status} $r->{content}\n"
        unless $r->{success} && $json;
    return $json->{value};
}

sub s { "/session/$_[0]{session}" }

sub get { my ($self, $url) = @_; $self->cmd(POST => $self->s . '/url', { url => $url }) }

# The element matching a CSS selector, or undef.
sub find {
    my ($self, $css) = @_;
    my $v = eval { $self->cmd(POST => $self->s . '/element',
        { using => 'css selector', value => $css }) } or return undef;
    return $v->{$ELEMENT};
}

sub click {
    my ($self, $css) = @_;
    my $id = $self->find($css) or die "no element $css\n";
    $self->cmd(POST => $self->s . "/element/$id/click", {});
}

sub text {
    my ($self, $css) = @_;
    my $id = $self->find($css) // return undef;
    return $self->cmd(GET => $self->s . "/element/$id/text");
}

sub displayed {
    my ($self, $css) = @_;
    my $id = $self->find($css) // return 0;
    return $self->cmd(GET => $self->s . "/element/$id/displayed") ? 1 : 0;
}

sub script {
    my ($self, $js, @args) = @_;
    return $self->cmd(POST => $self->s . '/execute/sync',
        { script => $js, args => \@args });
}

# Polls a condition (a code ref) until it holds or `timeout` seconds pass.
sub wait_for {
    my ($self, $timeout, $cond) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $v = eval { $cond->() };
        return $v if $v;
        sleep 0.1;
    }
    return undef;
}

sub screenshot {
    my ($self, $file) = @_;
    my $png = decode_base64($self->cmd(GET => $self->s . '/screenshot'));
    open my $fh, '>:raw', $file or die "$file: $!";
    print $fh $png;
    close $fh;
    return length $png;
}

sub quit {
    my ($self) = @_;
    eval { $self->cmd(DELETE => $self->s) } if $self->{session};
    $self->{session} = undef;
    if ($self->{pid} && $self->{owner} == $$) {
        kill 'TERM', $self->{pid};
        my $deadline = time + 5;
        sleep 0.05 while time < $deadline && waitpid($self->{pid}, WNOHANG) == 0;
        kill 'KILL', $self->{pid} if kill 0, $self->{pid};
        waitpid $self->{pid}, 0;
        $self->{pid} = undef;
    }
}

sub DESTROY { $_[0]->quit }

1;
