package Test::Nginx::Subset::Client;

# The raw-socket HTTP client of the bundled Test::Nginx::Socket.
#
# send_request() writes prepared request bytes and reads until the server
# closes the connection (requests carry "Connection: close"), like upstream:
# a non-blocking socket driven by select(), where "timeout" is the longest
# time to wait for the socket to become readable/writable, not a limit on
# the whole exchange.  parse_response() splits what was read into an
# HTTP::Response, decoding chunked bodies and handing back any bytes past
# the end of the response (the next pipelined response).
#
# Neither function emits TAP; problems come back as data for the caller.

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET ();
use IO::Select ();
use Errno qw(EAGAIN EWOULDBLOCK EINTR ECONNREFUSED);
use Time::HiRes qw(sleep time);
use HTTP::Response ();

our @EXPORT_OK = qw(send_request parse_response);

# %o: addr, port, packets (list of {value, delay_before}), timeout,
# middle_delay (default pause between packets), shutdown (shutdown(2) "how"
# after the last byte is written, "" meaning 1).
# Returns { resp => BYTES, timed_out => BOOL, connect_error => MSG }.
sub send_request {
    my (%o) = @_;

    my ($sock, $err) = _connect(@o{qw(addr port timeout)});
    return { resp => undef, connect_error => $err } unless $sock;
    $sock->blocking(0);

    local $SIG{PIPE} = 'IGNORE';    # a server closing early must not kill us

    my @queue   = @{ $o{packets} };
    my $pending = _next_packet(\@queue, undef, $o{middle_delay});
    my $resp    = '';
    my $timed_out = 0;

    while (1) {
        my $rsel = IO::Select->new($sock);
        my $wsel = defined $pending ? IO::Select->new($sock) : undef;
        my ($r, $w) = IO::Select->select($rsel, $wsel, undef, $o{timeout});

        if (!$r && !$w) {
            next if $! == EINTR;
            $timed_out = 1;
            last;
        }

        if ($w && @$w) {
            if (!_write_some($sock, \$pending)) {
                undef $pending;    # write error: still read what came back
                @queue = ();
            } elsif ($pending eq '') {
                $pending = _next_packet(\@queue, 1, $o{middle_delay});
                _shutdown($sock, $o{shutdown}) unless defined $pending;
            }
        }

        if ($r && @$r) {
            my $n = sysread($sock, my $buf, 16384);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                last;    # e.g. connection reset
            }
            last if $n == 0;
            $resp .= $buf;
        }
    }

    close $sock;
    return { resp => $resp, timed_out => $timed_out };
}

# Connection refused is retried for a short, bounded while: nginx listens
# before this is called, but a restart may still be settling.
sub _connect {
    my ($addr, $port, $timeout) = @_;
    my $deadline = time + 3;
    my $delay = 0.01;
    while (1) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $addr,
            PeerPort => $port,
            Proto    => 'tcp',
            Timeout  => $timeout,
        );
        return $sock if $sock;
        my $err = "$!";
        return (undef, $err) if $! != ECONNREFUSED || time >= $deadline;
        sleep $delay;
        $delay *= 2 if $delay < 0.2;
    }
}

# Takes the next packet off @$queue; before any but the first, sleeps its
# delay_before or else the block's raw_request_middle_delay.  Returns undef
# when nothing is left.
sub _next_packet {
    my ($queue, $not_first, $middle_delay) = @_;
    my $pkt = shift @$queue or return undef;
    my $delay = $pkt->{delay_before} // $middle_delay;
    sleep $delay if $delay && $not_first;
    return $pkt->{value} // '';
}

sub _write_some {
    my ($sock, $pending) = @_;
    return 1 if $$pending eq '';
    my $n = syswrite($sock, $$pending);
    if (!defined $n) {
        return 1 if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
        return 0;
    }
    substr($$pending, 0, $n) = '';
    return 1;
}

sub _shutdown {
    my ($sock, $how) = @_;
    return unless defined $how;
    $how = 1 if $how eq '';
    shutdown($sock, $how);
}

# Returns ($res, $raw_headers, $left, $error).  $raw_headers is the header
# text up to (excluding) the empty line; $left holds bytes after the end of
# this response.  On a malformed chunked body only $error is set.
sub parse_response {
    my ($raw, $head_req, $warn_name) = @_;
    $raw //= '';

    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';
    my $res = HTTP::Response->parse($raw);

    my $code = $res->code;
    if (defined $code && $code !~ /^\d+$/) {
        $res->code(undef);
        undef $code;
    }
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $te  = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my $left;

    if (defined $te && $te eq 'chunked') {
        my ($body, $rest, $err) = _decode_chunked($res->content // '');
        return (undef, undef, undef, $err) if defined $err;
        $res->content($body);
        $left = $rest;

    } elsif (defined $len && $len =~ /^\d+$/) {
        my $body = $res->content // '';
        if (length $body < $len) {
            warn "WARNING: $warn_name - response body truncated: "
                 . "$len expected, but got " . length($body) . "\n"
                unless $head_req;
        } elsif (length $body > $len) {
            $left = substr $body, $len;
            $res->content(substr $body, 0, $len);
        }
    }

    return ($res, $raw_headers, $left);
}

# Returns (decoded, bytes after the last chunk or undef, error or undef).
sub _decode_chunked {
    my ($raw) = @_;
    my $out = '';
    pos($raw) = 0;

    while (1) {
        if ($raw =~ /\G0[ \t]*\r\n\r\n/gc) {
            my $rest = substr $raw, pos $raw;
            return ($out, length $rest ? $rest : undef, undef);
        }

        if ($raw =~ /\G[ \t]*([0-9A-Fa-f]+)[ \t]*\r\n/gc) {
            my $size  = hex $1;
            my $start = pos $raw;
            return (undef, undef, "invalid chunked data received "
                    . "(not enough octets for the data section)")
                if length($raw) - $start < $size;
            $out .= substr $raw, $start, $size;
            pos($raw) = $start + $size;
            return (undef, undef,
                    "invalid chunked data received (expected CRLF).")
                unless $raw =~ /\G\r\n/gc;
            next;
        }

        my $at = pos($raw) // 0;
        return (undef, undef, $at < length $raw
                ? "invalid chunked body received: " . substr($raw, $at)
                : "no last chunk found - $raw");
    }
}

1;
