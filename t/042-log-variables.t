# Every $async_* variable the module registers works in log_format: the
# format below is built from the variable tables in src/, so a new
# variable is covered as soon as it exists (t/lib/AsyncSource.pm). The values of a request that
# went through a queue and a fan-out, and of one that touched neither.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use AsyncNginx;
use AsyncSource;

my @vars = AsyncSource::variables();
ok(@vars >= 5, 'variables found: ' . join ' ', @vars);

my $format = join ' ', map { "$_=\"\$$_\"" } @vars;

my $ng = AsyncNginx->new(name => 'logvars', workers => 1, http => <<"EOF");
    async_queue_zone zone=lq:1m active=4 length=10 timeout=5s;
    log_format every '\$uri $format';
    access_log logs/every.log every;
    server {
        listen 127.0.0.1:\$PORT;
        location = /plain { return 204; }
        location = /b/one { echo "one"; }
        location = /b/two { echo_sleep 0.05; echo "two"; }
        location = /b/slow { echo_sleep 2; echo "slow"; }
        location = /both {
            async_queue lq;
            async_fetch one /b/one;
            async_fetch two /b/two;
            async_fetch slow /b/slow timeout=100ms optional;
            add_header X-Fetch-Time \$async_fetch_time always;
        }
    }
EOF
$ng->start;

is($ng->get('/plain')->{status}, 204, 'a request the module leaves alone');
my $r = $ng->get('/both');
is($r->{status}, 200, 'a queued fan-out with a timed-out optional call');
like($r->{headers}{'x-fetch-time'}, qr/^0\.(?:0[5-9]|1\d|2\d)\d$/,
    '$async_fetch_time in a header: the time until the answer went out');

my %log;
my $deadline = time + 5;
while (time < $deadline) {
    %log = ();
    for my $line ($ng->log_file('every.log')) {
        my ($uri) = $line =~ /^(\S+)/;
        $log{$uri} = { $line =~ /(\w+)="([^"]*)"/g };
    }
    last if $log{'/both'} && $log{'/plain'};
    sleep 0.05;
}

my $both = $log{'/both'};
ok($both, 'fan-out request logged') or BAIL_OUT('no log line');
is_deeply([ sort grep { exists $both->{$_} } @vars ], \@vars,
    'every variable has a field');
is($both->{async_queue_status}, 'PASSED', '$async_queue_status');
like($both->{async_queue_time}, qr/^0\.0\d\d$/, '$async_queue_time');
is($both->{async_completed}, 'false', '$async_completed');
is($both->{async_failed}, 'slow=timeout', '$async_failed');
like($both->{async_fetch_time}, qr/^0\.(?:0[5-9]|1\d|2\d)\d$/,
    '$async_fetch_time: about the 100ms timeout');

my $plain = $log{'/plain'};
for my $v (@vars) {
    is($plain->{$v}, '-', "\$$v outside its feature: -");
}

my @bad = grep { /\[(?:error|alert|crit|emerg)\]/ } split /\n/, $ng->error_log;
is_deeply(\@bad, [], 'no [error] in the error log');
$ng->stop;
done_testing;
