# Raw keep-alive clients for the queue suites: a request on a connection
# that stays open, and the reading of one response (Content-Length or
# chunked).
package QueueClient;
use strict;
use warnings;
use Exporter 'import';
use IO::Select;
use Time::HiRes qw(time);
use AsyncNginx;

our @EXPORT_OK = qw(read_response send_get);

# Sends GET path (HTTP/1.1, keep-alive) on $s, or on a new connection.
sub send_get {
    my ($ng, $path, $s) = @_;
    $s //= $ng->connect_client or die "connect: $!";
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n\r\n";
    return $s;
}

# One response within $timeout seconds: (response, seconds taken), or
# (undef, undef).
sub read_response {
    my ($s, $timeout) = @_;
    my $t0 = time;
    my $sel = IO::Select->new($s);
    my $raw = '';
    while (time - $t0 < $timeout) {
        last unless $sel->can_read($timeout - (time - $t0));
        my $n = sysread $s, my $buf, 65536;
        last unless $n;
        $raw .= $buf;
        next unless $raw =~ /\r\n\r\n/;
        my ($head, $body) = split /\r\n\r\n/, $raw, 2;
        my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
        my $chunked = $head =~ /^Transfer-Encoding:\s*chunked/mi;
        if ((defined $len && length($body) >= $len)
            || ($chunked && $body =~ /(^|\r\n)0\r\n\r\n\z/)) {
            return (AsyncNginx::parse_response($raw), time - $t0);
        }
    }
    return (undef, undef);
}

1;
