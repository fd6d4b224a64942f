package Test::Nginx::Subset::Request;

# Turns the request sections of a test block (request, request_eval,
# raw_request, pipelined_requests, more_headers) into the bytes the client
# sends, with upstream Test::Nginx::Socket's rules:
#
#   * request line "METHOD [URI [VERSION]]"; URI defaults to "/", VERSION
#     to HTTP/1.1; spacing is normalised to single spaces and CRLF;
#   * "Host: <server_name>" and "Connection: close" are added unless
#     more_headers has them ("keep-alive" for all but the last of
#     pipelined_requests);
#   * a body (everything after the request line) is trimmed and gets a
#     Content-Length, unless more_headers sets Content-Length or
#     "Transfer-Encoding: chunked", in which case it is sent verbatim;
#   * more_headers lines starting with "#" are comments.
#
# The result is a list of requests, each sent on its own connection; a
# request is a list of packets { value => BYTES, delay_before => SECS }.
# Errors die with a message; the caller bails out.

use strict;
use warnings;

use Exporter 'import';
our @EXPORT_OK = qw(requests_from_block parse_more_headers build_request);

sub requests_from_block {
    my ($block, $host) = @_;

    return [_raw_request_packets(scalar $block->raw_request)]
        if defined $block->raw_request;

    my $request = _request_value($block);
    my $more    = $block->more_headers || '';

    if (my $list = $block->pipelined_requests) {
        return [_pipelined($list, $more, $host)];
    }

    if (!ref $request) {
        my ($hdr, $chunked) = _headers_for($more, 0, 'the request');
        return [build_request([{ value => $request }], $hdr, $chunked,
                              'close', $host)];
    }

    die "invalid ---request : MUST be string or array of requests\n"
        unless ref $request eq 'ARRAY';

    my @out;
    for my $i (0 .. $#$request) {
        my ($hdr, $chunked) = _headers_for($more, $i, "the ${i}th request");
        push @out, build_request(_packets_of($request->[$i]), $hdr, $chunked,
                                 'close', $host);
    }
    return \@out;
}

# "--- request" with leading blank and "#" comment lines removed, or the
# result of the deprecated "--- request_eval".
sub _request_value {
    my ($block) = @_;
    my $name = $block->name;

    if (defined $block->request_eval) {
        Test::More::diag("$name - request_eval DEPRECATED. "
                         . "Use request eval instead.");
        my $req = eval $block->request_eval;
        warn $@ if $@;
        return $req;
    }

    my $req = $block->request;
    if (defined $req && !ref $req) {
        1 while $req =~ s/^\s*\#[^\n]+\s+|^\s+//s;
    }
    return $req;
}

sub _raw_request_packets {
    my ($raw) = @_;
    my @parts = ref $raw eq 'ARRAY' ? @$raw : ($raw);
    return [map { { value => $_ } } @parts];
}

sub _pipelined {
    my ($list, $more, $host) = @_;
    die "invalid entries in --- pipelined_requests\n"
        unless ref $list eq 'ARRAY';

    my $bytes = '';
    for my $i (0 .. $#$list) {
        my ($hdr, $chunked) =
            _headers_for($more, $i, "the $i pipelined request");
        my $conn = $i == $#$list ? 'close' : 'keep-alive';
        my $pkts = build_request([{ value => $list->[$i] }], $hdr, $chunked,
                                 $conn, $host);
        $bytes .= join '', map { $_->{value} } @$pkts;
    }
    return [{ value => $bytes }];
}

# One element of an array "--- request eval": a string, or an array of
# packets, each a string or { value => ..., delay_before => ... }.
sub _packets_of {
    my ($req) = @_;
    return [{ value => $req }] unless ref $req;
    die "Invalid syntax. $req should be a string or an array of packets.\n"
        unless ref $req eq 'ARRAY';

    my @pkts;
    for my $p (@$req) {
        if (!ref $p) {
            push @pkts, { value => $p };
        } elsif (ref $p eq 'HASH') {
            push @pkts, { %$p };
        } else {
            die "Invalid syntax. $p should be a string or hash with value.\n";
        }
    }
    return \@pkts;
}

sub _headers_for {
    my ($more, $i, $what) = @_;
    return parse_more_headers($more) unless ref $more eq 'ARRAY';
    die "--- more_headers lacks data for $what\n" unless defined $more->[$i];
    return parse_more_headers($more->[$i]);
}

# "--- more_headers" text -> ("Key: value\r\n..." , is_chunked)
sub parse_more_headers {
    my ($in) = @_;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $in) {
        next if $line =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $val //= '';
        $chunked = 1 if lc $key eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $chunked);
}

# Rewrites one request given as packets into its wire form, keeping the
# packet boundaries (and their delays) at the matching places: a cut inside
# the request line stays before the added headers, a cut in the body stays
# at the same body offset.
sub build_request {
    my ($packets, $hdr, $chunked, $conn, $host) = @_;

    my $text = join '', map { $_->{value} // '' } @$packets;
    my $req  = _parse_request_text($text);
    my ($headers, $body, $body_skip) =
        _headers_and_body($req->{body}, $hdr, $chunked, $conn, $host);

    my $line = "$req->{method} $req->{uri} $req->{version}\r\n";
    my $wire = $line . $headers . $body;
    my $head_len = length($line) + length($headers);

    my $map = sub {
        my ($off) = @_;
        if ($off >= $req->{line_len}) {    # in the body
            my $b = $off - $req->{line_len} - $body_skip;
            $b = 0 if $b < 0;
            $b = length $body if $b > length $body;
            return $head_len + $b;
        }
        my $l = $off - $req->{lead_len};   # in the request line
        $l = 0 if $l < 0;
        return $l > length($line) - 2 ? length($line) - 2 : $l;
    };

    my (@out, $orig_end, $prev);
    $orig_end = 0;
    $prev = 0;
    for my $i (0 .. $#$packets) {
        $orig_end += length($packets->[$i]{value} // '');
        my $end = $i == $#$packets ? length $wire : $map->($orig_end);
        $end = $prev if $end < $prev;
        push @out, { %{ $packets->[$i] },
                     value => substr($wire, $prev, $end - $prev) };
        $prev = $end;
    }
    return \@out;
}

sub _parse_request_text {
    my ($text) = @_;
    die "Request line should be non-empty\n" unless length($text // '');

    my ($first, $rest) = $text =~ /\A([^\n]*\n?)(.*)\z/s;
    my ($lead) = $first =~ /^(\s*)/;
    my @parts = split ' ', $first;
    if (@parts < 1 || @parts > 3) {
        die "Request line is not valid. Should be 'meth [url [version]]' "
            . "but got \"$first\".\n";
    }

    return {
        method   => $parts[0],
        uri      => $parts[1] // '/',
        version  => $parts[2] // 'HTTP/1.1',
        body     => $rest,
        lead_len => length $lead,
        line_len => length $first,
    };
}

# Returns (header block incl. the empty line, body to send, number of
# leading body bytes dropped by trimming).
sub _headers_and_body {
    my ($body, $hdr, $chunked, $conn, $host) = @_;

    my ($len_header, $skip) = ('', 0);
    if (!$chunked && $body ne '' && $hdr !~ /(?:^|\n)Content-Length:/) {
        ($skip) = map { length } $body =~ /^(\s*)/;
        $body =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($body) . "\r\n";
    }

    my $headers = '';
    $headers .= "Host: $host\r\n"       unless $hdr =~ /(?:^|\n)Host:/i;
    $headers .= "Connection: $conn\r\n" unless $hdr =~ /(?:^|\n)Connection/i;
    $headers .= "$hdr$len_header\r\n";

    return ($headers, $body, $skip);
}

1;
