# async_fetch together with async_queue: on the fan-out location (the
# request parks before its content phase), and on the locations its calls
# target (each call's subrequest passes the queue on its own).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use AsyncNginx;

my $http = <<'EOF';
    async_queue_zone zone=front:1m active=1 length=10 timeout=10s;
    async_queue_zone zone=calls:1m active=2 length=10 timeout=5s;
    log_format calls '$uri $msec $async_queue_status';
    server {
        listen 127.0.0.1:$PORT;
        location = /status { async_status; }
        location = /front {
            async_queue front;
            async_fetch a /work?v=a;
            async_fetch b /work?v=b;
        }
        location = /work { echo_sleep 0.3; echo -n $arg_v; }

        location = /fan {
            async_fetch a /q/a;
            async_fetch b /q/b;
            async_fetch c /q/c;
            async_fetch d /q/d;
        }
        location /q/ {
            access_log logs/calls.log calls;
            log_subrequest on;
            async_queue calls;
            echo_sleep 0.3;
            echo -n $uri;
        }
    }
EOF

my $ng = AsyncNginx->new(name => 'fanout-queue', workers => 1, http => $http);
$ng->start;

subtest 'a fan-out location behind async_queue' => sub {
    my @res = $ng->parallel([ map { { path => '/front' } } 1 .. 2 ],
        timeout => 10);
    is(scalar(grep { $_->{status} == 200 } @res), 2, 'both answered');
    for my $r (@res) {
        is_deeply(decode_json($r->{body}), { a => 'a', b => 'b' },
            'full answer');
    }
    my ($first, $second) = sort { $a <=> $b } map { $_->{time} } @res;
    ok($first < 0.55, "the first ran its calls in parallel: $first s");
    ok($second >= 0.55, "the second waited for the slot: $second s");
    my $z = $ng->wait_zone_idle('front');
    is($z->{active}, 0, 'the slot was given back');
};

subtest 'calls whose location is behind async_queue' => sub {
    my $r = $ng->get('/fan', timeout => 10);
    is($r->{status}, 200, 'status 200');
    is_deeply(decode_json($r->{body}),
        { a => '/q/a', b => '/q/b', c => '/q/c', d => '/q/d' },
        'every call answered');
    ok($r->{time} >= 0.55 && $r->{time} < 3,
        "two at a time through a queue of active=2: $r->{time} s");
    my %st;
    $st{ (split ' ')[2] }++ for $ng->log_file('calls.log');
    is($st{PASSED}, 2, 'two calls passed at once');
    is($st{QUEUED}, 2, 'two waited for a slot');
    my $z = $ng->wait_zone_idle('calls');
    is($z->{active}, 0, 'no slot held afterwards');
};

is(scalar($ng->crash_lines), 0, 'no alert or crash')
    or diag join "\n", $ng->crash_lines;
my @errors = grep { /\[error\]/ && !/timed out .* in queue/ } split /\n/, $ng->error_log;
is(scalar @errors, 0, 'no [error]') or diag explain \@errors;
$ng->stop;

done_testing;
