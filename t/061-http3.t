# HTTP/3: parking and a fan-out hold for streams of one QUIC connection.
# Needs an nginx built --with-http_v3_module (the 1.30.4 tree of
# `./build.sh matrix`; Debian 12's 1.22.1 has none: the suite skips) and
# ngtcp2-client's gtlsclient.  The certificate is a throwaway self-signed
# one made with openssl for this run.
#
# Ports: $TEST_NGINX_SERVER_PORT (QUIC, UDP), +1 a plain HTTP/1.1 server
# block for the status and the fan-out's backend.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use IO::Socket::INET;
use File::Path qw(make_path remove_tree);
use AsyncNginx;

my $bin = AsyncNginx::binary();
my $v = `$bin -V 2>&1`;
plan skip_all => "nginx ($bin) is built without http_v3_module"
    unless $v =~ /--with-http_v3_module/;
chomp(my $client = `command -v gtlsclient 2>/dev/null` // '');
plan skip_all => 'gtlsclient (ngtcp2-client) is not installed' unless $client;
plan skip_all => 'openssl is not installed'
    if system('command -v openssl >/dev/null') != 0;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $port + 1;

my $http = <<"EOF";
    async_queue_zone zone=park:1m active=1 length=10 timeout=30s;
    server {
        listen 127.0.0.1:\$PORT quic;
        # the same port over TCP, as sites do (and the harness waits for it)
        listen 127.0.0.1:\$PORT ssl;
        ssl_certificate \@CERT\@/cert.pem;
        ssl_certificate_key \@CERT\@/key.pem;
        ssl_protocols TLSv1.3;

        location /park/ {
            async_queue park;
            echo_sleep 0.2;
            echo -n "\$uri";
        }
        location /up/ {
            proxy_pass http://127.0.0.1:$backend/be/;
        }
        location /fan/ {
            async_fetch a /up/json/a?v=\$uri;
            async_fetch b /up/text/b;
        }
    }
    server {
        listen 127.0.0.1:$backend;
        location = /status { async_status; }
        location /be/json/ {
            default_type application/json;
            return 200 '{"v":"\$arg_v"}';
        }
        location /be/text/ {
            default_type text/plain;
            return 200 "text \$uri";
        }
    }
EOF

# one worker: with several, QUIC needs `reuseport` to keep a connection's
# packets on one worker
my $ng = AsyncNginx->new(name => 'http3', workers => 1, http => $http);
# a throwaway certificate beside the server root (which start() wipes)
my $cert = $ng->root . '-cert';
make_path($cert);
system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
    . " -nodes -subj /CN=localhost -days 2 -keyout $cert/key.pem"
    . " -out $cert/cert.pem 2>/dev/null") == 0 or die 'openssl req failed';
$ng->{http} =~ s/\@CERT\@/$cert/g;
$ng->start;

sub status_json {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $backend, Timeout => 5) or return {};
    print $s "GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $r = AsyncNginx::parse_response(<$s> // '');
    return $r->{status} == 200 ? decode_json($r->{body}) : {};
}

# Runs gtlsclient on PATHS over one connection; returns the streams in
# the order they closed: [{id, status, body}].
sub h3 {
    my @paths = @_;
    my $dir = $ng->root . '/h3';
    remove_tree($dir);
    make_path($dir);
    my @uris = map { "https://127.0.0.1:$port$_" } @paths;
    my $out = `timeout 60 $client --no-quic-dump --exit-on-all-streams-close --timeout=30s 127.0.0.1 $port @uris 2>&1`;
    my (%st, @closed, %body, %cur);
    my $in_body;
    for my $line (split /\n/, $out) {
        if ($line =~ /^http: stream 0x([0-9a-f]+) \[:status: (\d+)\]/) {
            $st{ hex $1 } = $2;
        } elsif ($line =~ /^http: stream 0x([0-9a-f]+) body \d+ bytes/) {
            $in_body = hex $1;
        } elsif (defined $in_body
                 && $line =~ /^[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2})+)/) {
            $body{$in_body} .= join '', map { chr hex } split ' ', $1;
        } elsif ($line =~ /^HTTP stream (\d+) closed/) {
            push @closed, $1;
            undef $in_body;
        } else {
            undef $in_body unless $line =~ /^[0-9a-f]{8}  /;
        }
    }
    if (open my $fh, ">", "$dir/client.log") { print $fh $out }
    diag $out unless @closed == @paths;
    return map { { id => $_, status => $st{$_}, body => $body{$_} // '' } }
        @closed;
}

subtest 'streams of one QUIC connection are parked and admitted in order' => sub {
    my @paths = map { "/park/$_" } qw(a b c d);
    my @r = h3(@paths);
    is(scalar @r, 4, 'four streams answered');
    is_deeply([map { $_->{status} } @r], [(200) x 4], 'all 200');
    is_deeply([map { $_->{body} } @r], \@paths,
        'answered in the order they were sent, each its own body');
    my $z = status_json()->{queue_zones}{park} // {};
    ok(($z->{queued} // 0) >= 2, 'at least two waited (' . ($z->{queued} // 'none') . ')');
    is(($z->{passed} // 0) + ($z->{queued} // 0), 4, 'four went through the zone');
    is($z->{waiting}, 0, 'nothing left waiting');
};

subtest 'a fan-out over HTTP/3 answers correctly' => sub {
    my @r = h3('/fan/1', '/fan/2');
    is(scalar @r, 2, 'both streams answered');
    for my $r (@r) {
        is($r->{status}, 200, "stream $r->{id}: 200");
        my $json = eval { decode_json($r->{body}) } // {};
        my ($n) = ($json->{a}{v} // '') =~ m{^/fan/(\d)$};
        ok($n, "stream $r->{id}: its own call") or diag $r->{body};
        is($json->{b}, 'text /be/text/b', "stream $r->{id}: the other call");
    }
};

my @errors = grep { /\[error\]/ } split /\n/, $ng->error_log;
is(scalar @errors, 0, 'no [error] in the error log') or diag explain \@errors;
is(scalar($ng->crash_lines), 0, 'no alert or crash')
    or diag join "\n", $ng->crash_lines;
$ng->stop;

done_testing;
