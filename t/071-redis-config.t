# store=redis configuration: what `nginx -t` refuses (with an [emerg]
# naming the parameter, never the password), what it takes, and what a
# running nginx does with a wrong password, an address where nothing
# listens, or a unix socket: job locations answer 503 + Retry-After with
# one [error] for the outage, never a crash; other locations go on.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use AsyncNginx;
use RedisServer;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $redis_port = $port + 5;
my $dead_port = $port + 6; # nothing listens there
my $tmp = tempdir(CLEANUP => 1);

my $secret = 'hunter2-not-logged';
open my $pw, '>', "$tmp/password" or die $!;
print $pw "$secret\n";
close $pw;
open $pw, '>', "$tmp/unreadable" or die $!;
close $pw;
chmod 0, "$tmp/unreadable";

my $ng = AsyncNginx->new(name => 'redis-config', workers => 1);

sub http {
    my ($zone) = @_;
    return <<"EOF";
    $zone
    server {
        listen 127.0.0.1:\$PORT;
        location /submit { async_job jobs /work; }
        location /work { return 200 "done\\n"; }
        location /jobs/ { async_job_status jobs; }
        location /plain { return 200 "plain\\n"; }
    }
EOF
}

my $z = 'async_job_zone zone=jobs:1m';
my @refused = (
    [ 'store=redis without redis=', "$z store=redis;",
      qr/\[emerg\].*store=redis needs redis=ADDRESS/ ],
    [ 'a host name', "$z store=redis redis=localhost:6379;",
      qr/\[emerg\].*invalid redis address "localhost:6379".*no host names/ ],
    [ 'no port', "$z store=redis redis=127.0.0.1;",
      qr/\[emerg\].*invalid redis address "127.0.0.1"/ ],
    [ 'port out of range', "$z store=redis redis=127.0.0.1:70000;",
      qr/\[emerg\].*invalid redis address "127.0.0.1:70000"/ ],
    [ 'IPv6 without brackets', "$z store=redis redis=::1:6379;",
      qr/\[emerg\].*invalid redis address "::1:6379"/ ],
    [ 'relative unix path', "$z store=redis redis=unix:redis.sock;",
      qr/\[emerg\].*invalid redis address "unix:redis.sock"/ ],
    [ 'unknown store', "$z store=memcached;",
      qr/\[emerg\].*invalid store "memcached" in "async_job_zone": shm or redis/ ],
    [ 'redis parameters without store=redis', "$z redis=127.0.0.1:6379;",
      qr/\[emerg\].*redis parameters of "async_job_zone" need store=redis/ ],
    [ 'bad redis_db', "$z store=redis redis=127.0.0.1:6379 redis_db=x;",
      qr/\[emerg\].*invalid parameter "redis_db=x" in "async_job_zone"/ ],
    [ 'bad redis_timeout',
      "$z store=redis redis=127.0.0.1:6379 redis_timeout=soon;",
      qr/\[emerg\].*invalid parameter "redis_timeout=soon" in "async_job_zone"/ ],
    [ 'two zones with one Redis, db and prefix',
      "$z store=redis redis=127.0.0.1:6379;\n"
      . "async_job_zone zone=other:1m store=redis redis=127.0.0.1:6379;",
      qr/\[emerg\].*async_job_zone "jobs" and "other" share redis 127.0.0.1:6379, redis_db and redis_prefix/ ],
    [ 'missing password file',
      "$z store=redis redis=127.0.0.1:6379 redis_password_file=$tmp/nosuch;",
      qr/\[emerg\].*redis_password_file "\Q$tmp\E\/nosuch" cannot be opened/ ],
);
# root reads a file whatever its mode: only a non-root run sees "unreadable"
push @refused, [ 'unreadable password file',
      "$z store=redis redis=127.0.0.1:6379 redis_password_file=$tmp/unreadable;",
      qr/\[emerg\].*redis_password_file .* cannot be opened/ ] if $> != 0;
push @refused, [ 'empty password file',
      "$z store=redis redis=127.0.0.1:6379 redis_password_file=$tmp/unreadable;",
      qr/\[emerg\].*redis_password_file .* must hold one line/ ] if $> == 0;

for my $case (@refused) {
    my ($name, $zone, $re) = @$case;
    my ($rc, $out) = $ng->check_config(http => http($zone));
    isnt($rc, 0, "refused: $name");
    like($out, $re, "the [emerg] names it: $name");
}

my @taken = (
    [ 'defaults', "$z;" ],
    [ 'store=shm', "$z store=shm;" ],
    [ 'IPv4', "$z store=redis redis=127.0.0.1:6379;" ],
    [ 'IPv6', "$z store=redis redis=[::1]:6379;" ],
    [ 'unix socket', "$z store=redis redis=unix:/run/redis.sock;" ],
    [ 'every parameter', "$z store=redis redis=127.0.0.1:6379 redis_db=3 "
        . "redis_prefix=site1: redis_timeout=250ms "
        . "redis_password_file=$tmp/password;" ],
);
for my $case (@taken) {
    my ($name, $zone) = @$case;
    my ($rc, $out) = $ng->check_config(http => http($zone));
    is($rc, 0, "taken: $name") or diag $out;
    unlike($out, qr/\Q$secret\E/, "the password is not in the output: $name");
}

my $redis = RedisServer->new(port => $redis_port, dir => $tmp);
END { $redis->stop if $redis }

sub log_lines {
    my ($re) = @_;
    open my $fh, '<', $ng->root . '/logs/error.log' or return ();
    return grep { /$re/ } <$fh>;
}

sub answers_503 {
    my ($what) = @_;
    for (1 .. 5) {
        my $t0 = time;
        my $r = $ng->get('/jobs/AAAAAAAAAAAAAAAAAAAAAA');
        is($r->{status}, 503, "$what: status answers 503") or return;
        is($r->{headers}{'retry-after'}, '1', "$what: with Retry-After");
        cmp_ok(time - $t0, '<', 2, "$what: within redis_timeout");
    }
    is($ng->request('POST', '/submit')->{status}, 503, "$what: submit 503");
    is($ng->get('/plain')->{status}, 200, "$what: other locations go on");
}

SKIP: {
    skip 'redis-server is not installed', 1 unless RedisServer::installed();

    subtest 'unreachable Redis: 503, one [error], nginx -t passes' => sub {
        $ng->{http} = http("$z store=redis redis=127.0.0.1:$dead_port "
            . 'redis_timeout=500ms;');
        $ng->start;
        answers_503('unreachable');
        sleep 1; # a few reconnects with backoff
        answers_503('still unreachable');
        is(scalar(() = log_lines(qr/\[error\].*redis .* unavailable/)), 1,
            'one [error] for the outage');
        is(scalar(() = log_lines(qr/\[(alert|crit|emerg)\]/)), 0,
            'no alert, no crash');
        $ng->stop;
    };

    subtest 'wrong password: 503 and one [error], not a crash' => sub {
        $redis->start('--requirepass', 'the-right-one');
        $ng->{http} = http("$z store=redis redis=127.0.0.1:$redis_port "
            . "redis_timeout=500ms redis_password_file=$tmp/password;");
        $ng->start;
        answers_503('wrong password');
        sleep 1;
        answers_503('still wrong');
        my @errors = log_lines(qr/\[error\]/);
        is(scalar @errors, 1, 'one [error]') or diag @errors;
        like($errors[0] // '', qr/AUTH failed/, 'it says AUTH failed');
        is(scalar(() = log_lines(qr/\Q$secret\E/)), 0,
            'the password is never logged');
        is(scalar(() = log_lines(qr/\[(alert|crit|emerg)\]/)), 0,
            'no alert, no crash');
        $ng->stop;
        $redis->stop;
    };

    subtest 'the right password, redis_db, a unix socket, two zones' => sub {
        my $sock = "$tmp/redis.sock";
        $redis->start('--requirepass', $secret, '--unixsocket', $sock);
        my $common = "store=redis redis=unix:$sock redis_db=2 "
            . "redis_password_file=$tmp/password";
        $ng->{http} = http("$z $common redis_prefix=t039:;\n"
            . "    async_job_zone zone=other:1m $common redis_prefix=other:;");
        # the second zone's status location, in the same server
        $ng->{http} =~ s|(location /plain)|location /o/ { async_job_status other; }\n        $1|;
        $ng->start;
        ok(RedisServer::node_ready($ng), 'connected');
        my $r = $ng->request('POST', '/submit');
        is($r->{status}, 202, 'a job accepted');
        my $id = (eval { decode_json($r->{body}) } // {})->{id} // '';
        ok(AsyncNginx::wait_until(sub {
            $ng->get("/jobs/$id/result")->{status} == 200
        }, 5), 'its result');
        my $keys = `redis-cli -s $sock -a $secret --no-auth-warning -n 2 keys 't039:*' 2>&1`;
        like($keys, qr/^t039:\{\Q$id\E\}:meta$/m, 'keys in db 2, with the '
            . 'prefix and one hash tag per job');
        my @clients = grep { !/cmd=client/ }
            `redis-cli -s $sock -a $secret --no-auth-warning client list`;
        is(scalar @clients, 2, 'one worker, two zones on one Redis: one '
            . 'command and one subscriber connection') or diag @clients;
        is(scalar(grep { /\bsub=3\b/ } @clients), 1,
            'the subscriber listens for both zones and lease expiries');
        is($ng->get('/o/AAAAAAAAAAAAAAAAAAAAAA')->{status}, 404,
            'the second zone answers');
        is(scalar(() = log_lines(qr/\[(error|alert|crit)\]/)), 0, 'no error');
        $ng->stop;
        $redis->stop;
    };
}

done_testing;
