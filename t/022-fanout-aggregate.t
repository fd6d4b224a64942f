# async_aggregate: the json form is valid JSON for every mix of bodies
# (checked with JSON::PP), and the streamed forms (concat, multipart) send
# their parts as they complete, with the outcome in trailers.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use JSON::PP;
use AsyncNginx;

# Bodies of every kind, each behind its own location.
my %kinds = (
    json     => 'default_type application/json; return 200 \'{"k": ["v", 1.5, null]}\';',
    plusjson => 'default_type application/vnd.x+json; return 200 \'"s\\u00e9"\';',
    badjson  => 'default_type application/json; return 200 \'{"open": \';',
    text     => 'return 200 "line \\"one\\"\\n\\ttab\\\\";',
    binary   => 'types { application/octet-stream bin; } try_files /bin.bin =404;',
    empty    => 'return 200 "";',
    failed   => 'return 503;',
    missing  => 'try_files /nosuch =404;',
    slow     => 'echo_sleep 0.1; echo -n "slow";',
);
my @names = sort keys %kinds;

my $locations = join '', map { "        location = /k/$_ { $kinds{$_} }\n" }
    @names;

# Every subset of three kinds, in a fan-out location of its own; all calls
# optional so that failures give a partial answer.
my (@mixes, $fanouts);
for my $i (0 .. $#names) {
    for my $j ($i .. $#names) {
        for my $k ($j .. $#names) {
            my @mix = @names[$i, $j, $k];
            my $loc = "/mix/" . join('-', @mix);
            push @mixes, [ $loc, @mix ];
            my $n = 0;
            $fanouts .= "        location = $loc {\n"
                . join('', map { $n++; "            async_fetch c${n}_$_ /k/$_ optional;\n" } @mix)
                . "        }\n";
        }
    }
}

my $http = <<"EOF";
    server {
        listen 127.0.0.1:\$PORT;
        root html;
$locations
$fanouts
        location = /concat {
            async_aggregate concat;
            async_fetch text /k/text;
            async_fetch slow /k/slow;
            async_fetch gone /k/missing optional;
            async_fetch bin /k/binary;
        }
        location = /multipart {
            async_aggregate multipart;
            async_fetch slow /k/slow;
            async_fetch json /k/json;
            async_fetch gone /k/failed optional;
        }
        location = /concat-fail {
            async_aggregate concat;
            async_fetch first /k/text;
            async_fetch later /k/late-fail;
        }
        location = /k/late-fail { echo_sleep 0.3; echo_status 500; echo -n x; }
    }
EOF

my $ng = AsyncNginx->new(name => 'fanout-aggregate', workers => 1,
    http => $http);
# start() recreates the server root: the file goes in afterwards
$ng->start;
{
    open my $fh, '>', $ng->root . '/html/bin.bin' or die $!;
    print $fh join '', map { chr } 0 .. 255, 0xc3, 0x28, 0xed, 0xa0, 0x80;
    close $fh;
}

my %expect_null = (failed => 1, missing => 1);

subtest 'json is valid for every mix of bodies' => sub {
    my $json = JSON::PP->new->utf8;
    for my $mix (@mixes) {
        my ($loc, @kinds) = @$mix;
        my $r = $ng->get($loc);
        is($r->{status}, 200, "$loc: status 200") or next;
        my $doc = eval { $json->decode($r->{body}) };
        ok($doc, "$loc: valid JSON") or do { diag $@, $r->{body}; next };
        my $n = 0;
        my @keys = map { $n++; "c${n}_$_" } @kinds;
        is_deeply([ sort keys %$doc ], [ sort @keys ], "$loc: one key per call");
        ok($r->{body} =~ /^\{"\Q$keys[0]\E":/, "$loc: declaration order");
        for my $i (0 .. $#kinds) {
            my $v = $doc->{ $keys[$i] };
            my $kind = $kinds[$i];
            if ($expect_null{$kind}) {
                ok(!defined $v, "$loc: $kind is null");
            } elsif ($kind eq 'json') {
                is_deeply($v, { k => [ 'v', 1.5, undef ] }, "$loc: json inlined");
            } elsif ($kind eq 'plusjson') {
                is($v, "s\x{e9}", "$loc: +json inlined");
            } elsif ($kind eq 'binary') {
                is(substr($v, 0, 128), join('', map { chr } 0 .. 127),
                    "$loc: binary as a string, ASCII kept");
                ok(substr($v, 128) =~ /^[\x{fffd}(]+$/,
                    "$loc: bad UTF-8 became U+FFFD");
            } else {
                ok(defined $v && !ref $v, "$loc: $kind is a string");
            }
        }
        my $failed = join ', ', map { "c" . ($_ + 1) . "_$kinds[$_]="
                . ($kinds[$_] eq 'failed' ? 503 : 404) }
            grep { $expect_null{ $kinds[$_] } } 0 .. $#kinds;
        is($r->{headers}{'x-async-failed'} // '', $failed,
            "$loc: X-Async-Failed");
        is($r->{headers}{'x-async-completed'}, $failed ? 'false' : 'true',
            "$loc: X-Async-Completed");
    }
};

# A raw HTTP/1.1 exchange: (head, [chunks with arrival times], trailers).
sub raw_chunks {
    my ($path) = @_;
    my $s = $ng->connect_client or die "connect: $!";
    my $start = time;
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    my ($raw, @arrivals) = ('');
    while (1) {
        my $n = sysread $s, my $buf, 65536;
        last unless $n;
        $raw .= $buf;
        push @arrivals, [ time - $start, length $raw ];
    }
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my (@chunks, $offset);
    $offset = length($head) + 4;
    my $trailers = '';
    while ($body =~ s/^([0-9a-f]+)\r\n//) {
        my $len = hex $1;
        $offset += length($1) + 2;
        if ($len == 0) {
            ($trailers = $body) =~ s/\r\n\r\n\z//;
            last;
        }
        my ($at) = map { $_->[0] } grep { $_->[1] >= $offset + $len } @arrivals;
        push @chunks, [ substr($body, 0, $len, ''), $at ];
        $body =~ s/^\r\n//;
        $offset += $len + 2;
    }
    return ($head, \@chunks, $trailers // '');
}

subtest 'concat streams parts in declaration order, outcome in trailers' => sub {
    my ($head, $chunks, $trailers) = raw_chunks('/concat');
    like($head, qr{^HTTP/1.1 200}, 'status 200');
    like($head, qr/\r\nTransfer-Encoding: chunked/i, 'chunked');
    like($head, qr/\r\nTrailer: X-Async-Completed, X-Async-Failed/,
        'announces trailers');
    my $body = join '', map { $_->[0] } @$chunks;
    is($body, "line \"one\"\n\ttab\\" . "slow" .
        join('', map { chr } 0 .. 255, 0xc3, 0x28, 0xed, 0xa0, 0x80),
        'bodies in declaration order, binary untouched, failed optional left out');
    ok(@$chunks >= 2 && $chunks->[0][1] < $chunks->[-1][1] - 0.05,
        'the first part went out before the slow one was ready')
        or diag explain $chunks;
    like($trailers, qr/^X-Async-Completed: false\r\nX-Async-Failed: gone=404$/,
        'trailers carry the outcome');
};

subtest 'multipart streams parts in completion order' => sub {
    my ($head, $chunks, $trailers) = raw_chunks('/multipart');
    my ($boundary) = $head =~ m{\r\nContent-Type: multipart/mixed; boundary=(\S+)};
    ok($boundary, 'multipart/mixed with a boundary');
    my $body = join '', map { $_->[0] } @$chunks;
    like($body, qr/^--\Q$boundary\E\r\nContent-Type:\ application\/json\r\n
        X-Async-Name:\ json\r\n\r\n\{"k":\ \["v",\ 1.5,\ null\]\}\r\n
        --\Q$boundary\E\r\nContent-Type:\ text\/plain\r\n
        X-Async-Name:\ slow\r\n\r\nslow\r\n--\Q$boundary\E--\r\n$/x,
        'fast part first, then the slow one, then the closing boundary');
    ok(@$chunks >= 2 && $chunks->[0][1] < $chunks->[-1][1] - 0.05,
        'the first part arrived before the slow one was ready')
        or diag explain $chunks;
    like($trailers, qr/X-Async-Failed: gone=503/, 'outcome in trailers');
};

subtest 'a required failure after the stream started closes the connection' => sub {
    my ($head, $chunks, $trailers) = raw_chunks('/concat-fail');
    like($head, qr{^HTTP/1.1 200}, 'the status line had gone out');
    is(join('', map { $_->[0] } @$chunks), "line \"one\"\n\ttab\\",
        'the first part arrived');
    is($trailers, '', 'no last chunk: the client sees the answer cut short');
    like($ng->error_log, qr/\[warn\].*a required call failed after the response started/,
        'a warning says why');
};

my @errors = grep { /\[error\]/ && !/open\(\)|nosuch/ } split /\n/, $ng->error_log;
is(scalar @errors, 0, 'no unexpected [error]') or diag explain \@errors;
is(scalar($ng->crash_lines), 0, 'no alert or crash')
    or diag join "\n", $ng->crash_lines;
$ng->stop;

done_testing;
