# A job record freed by DELETE is taken at once by the next submit. Parked
# waiters are matched per waiter by (record, generation): a long-poll of the
# deleted job gets that job's answer (404), and a waiter on the new job in
# the same record keeps waiting for its own job, whatever the order in
# which the worker sees the events.
#
# To put both waiters on one record before the wake-up of the DELETE is
# handled, the only worker is held in echo_blocking_sleep while the DELETE,
# the second DELETE (which frees the record) and the new submit arrive on
# idle keep-alive connections: it then reads all three in one pass of its
# event loop, and the DELETE's wake-up (a posted event) runs after them.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AsyncNginx;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $port + 1;

my $ng = AsyncNginx->new(name => 'jobs-reuse', workers => 1, http => <<"EOF");
    async_job_zone zone=jobs:1m active=4 length=4;
    server {
        listen 127.0.0.1:$backend;
        location /slow { echo_sleep 30; echo "slow"; }
        location /fast { echo "fast"; }
    }
    server {
        listen 127.0.0.1:\$PORT;
        keepalive_timeout 60s;
        location /slowjob { async_job jobs /internal/slow; }
        location /fastjob { async_job jobs /internal/fast; }
        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:$backend/;
        }
        location /jobs/ { async_job_status jobs; }
        # holds the worker: "in" is flushed before the blocking sleep
        location /block { echo "in"; echo_flush; echo_blocking_sleep 1.5; echo "out"; }
    }
EOF
$ng->start;

# --- one keep-alive connection, one request at a time ----------------------

sub conn { $ng->connect_client or die "connect: $!" }

sub send_req {
    my ($s, $method, $path, %h) = @_;
    my $body = delete $h{body} // '';
    my $hdrs = "Host: localhost\r\n";
    $hdrs .= "Content-Length: " . length($body) . "\r\n"
        if length $body || $method eq 'POST';
    $hdrs .= "$_: $h{$_}\r\n" for sort keys %h;
    syswrite $s, "$method $path HTTP/1.1\r\n$hdrs\r\n$body";
}

# Reads until $done->($raw) or the deadline; returns what came.
sub read_until {
    my ($s, $timeout, $done) = @_;
    my $raw = '';
    my $deadline = time + $timeout;
    my $sel = IO::Select->new($s);
    while (time < $deadline && !$done->($raw)) {
        next unless $sel->can_read(0.05);
        my $n = sysread $s, my $buf, 65536;
        last unless $n;
        $raw .= $buf;
    }
    return $raw;
}

sub complete {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    return 0 unless defined $body;
    return $body =~ /(?:^|\r\n)0\r\n\r\n$/ if $head =~ /chunked/i;
    my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
    return length($body) >= ($len // 0);
}

sub read_response {
    my ($s, $timeout) = @_;
    return AsyncNginx::parse_response(
        read_until($s, $timeout * AsyncNginx::wait_factor(), \&complete));
}

sub call {
    my ($s, @req) = @_;
    send_req($s, @req);
    return read_response($s, 10);
}

sub json { my $j = eval { decode_json($_[0]{body}) }; return $j // {} }

# ----------------------------------------------------------------------------

my ($c1, $c2, $c3, $c4) = map { conn() } 1 .. 4;
my $old = json(call($c2, 'POST', '/slowjob'))->{id};
ok($old, 'the old job is accepted') or BAIL_OUT('no job');
my $deadline = time + 10;
my $st;
while (time < $deadline) {
    $st = json(call($c2, 'GET', "/jobs/$old"))->{status} // '';
    last if $st eq 'running';
    sleep 0.05;
}
is($st, 'running', 'it runs');
# C3 and C4 are accepted and idle: their next request is read at once
is(call($c3, 'GET', "/jobs/$old")->{status}, 200, 'second connection');
is(call($c4, 'GET', "/jobs/$old")->{status}, 200, 'third connection');

# W1: a long-poll of the old job; the round trip on C2 after it means the
# worker has read (and parked) it
send_req($c1, 'GET', "/jobs/$old?wait=20");
is(json(call($c2, 'GET', "/jobs/$old"))->{status}, 'running',
    'still running while W1 waits');

my $c0 = conn();
send_req($c0, 'GET', '/block');
my $in = read_until($c0, 10, sub { $_[0] =~ /\bin\n/ });
like($in, qr/\bin\n/, 'the worker is held');

# all three are read in one pass once the worker is free again
send_req($c2, 'DELETE', "/jobs/$old");
send_req($c3, 'DELETE', "/jobs/$old");
send_req($c4, 'POST', '/fastjob', Prefer => 'wait=10');

my $del = read_response($c2, 10);
is($del->{status}, 202, 'DELETE of the running job: 202');
my $del2 = read_response($c3, 10);
is($del2->{status}, 204, 'second DELETE: the record is freed');
my $w2 = read_response($c4, 15);
is($w2->{status}, 200,
    'W2, the new job\'s submit with Prefer: wait, waits for its own job')
    or diag explain $w2;
is($w2->{body}, "fast\n", 'and gets its result');
my $w1 = read_response($c1, 15);
is($w1->{status}, 404, 'W1 of the deleted job: 404, its job is gone')
    or diag explain $w1;
$in .= read_until($c0, 10, sub { complete($in . $_[0]) });
like($in, qr/\bout\n/, 'the blocking request ended');

# the freed record took the new job (a LIFO free list): nothing else lives
my $c5 = conn();
is(call($c5, 'GET', "/jobs/$old")->{status}, 404, 'the old id stays gone');
close $_ for $c0, $c1, $c2, $c3, $c4, $c5;

unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
is(scalar($ng->crash_lines), 0, 'no alert or crash')
    or diag join "\n", $ng->crash_lines;
$ng->stop;

done_testing;
