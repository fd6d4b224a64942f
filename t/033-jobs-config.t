# Bad job configuration fails `nginx -t` with an [emerg] that names the
# directive and the value.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use AsyncNginx;

my $ng = AsyncNginx->new(name => 'jobs-config', workers => 1);

sub server { "server { listen 127.0.0.1:\$PORT; $_[0] }" }

my $zone = 'async_job_zone zone=jobs:1m;';
my $status = 'location /jobs/ { async_job_status jobs; }';

my @cases = (
    [ 'unknown zone in async_job',
      server("$status location /s { async_job nosuch /w; }") . "\n$zone",
      qr/\[emerg\].*unknown async_job_zone "nosuch" in "async_job"/ ],
    [ 'unknown zone in async_job_status',
      server('location /jobs/ { async_job_status nosuch; }'),
      qr/\[emerg\].*unknown async_job_zone "nosuch" in "async_job_status"/ ],
    [ 'async_job and async_fetch in one location',
      "$zone\n" . server("$status location /s { async_fetch a /a; async_job jobs /w; }"),
      qr/\[emerg\].*"async_job" "jobs" and "async_fetch" cannot be in the same location "\/s"/ ],
    [ 'async_fetch after async_job in one location',
      "$zone\n" . server("$status location /s { async_job jobs /w; async_fetch a /a; }"),
      qr/\[emerg\].*"async_fetch".*conflicts with another content handler/ ],
    [ 'async_job with another content handler',
      "$zone\n" . server("$status location /s { echo hi; async_job jobs /w; }"),
      qr/\[emerg\].*"async_job" "jobs" in location "\/s" conflicts with another content handler/ ],
    [ 'async_job without a status location',
      "$zone\n" . server('location /s { async_job jobs /w; }'),
      qr/\[emerg\].*async_job_zone "jobs" is used by "async_job" but has no "async_job_status" location/ ],
    [ 'async_job_status in a regex location',
      "$zone\n" . server('location ~ ^/jobs/ { async_job_status jobs; }'),
      qr/\[emerg\].*"async_job_status" "jobs" needs a prefix location/ ],
    [ 'async_job_callback without async_job',
      "$zone\n" . server("$status location /s { async_job_callback /cb; }"),
      qr/\[emerg\].*"async_job_callback" in location "\/s" needs "async_job"/ ],
    [ 'bad wait= of async_job',
      "$zone\n" . server("$status location /s { async_job jobs /w wait=soon; }"),
      qr/\[emerg\].*invalid parameter "wait=soon" in "async_job"/ ],
    [ 'relative job URI',
      "$zone\n" . server("$status location /s { async_job jobs w; }"),
      qr/\[emerg\].*invalid URI "w" in "async_job"/ ],
    [ 'bad ttl',
      'async_job_zone zone=jobs:1m ttl=never;',
      qr/\[emerg\].*invalid parameter "ttl=never" in "async_job_zone"/ ],
    [ 'bad max_result',
      'async_job_zone zone=jobs:1m max_result=big;',
      qr/\[emerg\].*invalid parameter "max_result=big" in "async_job_zone"/ ],
    [ 'active=0',
      'async_job_zone zone=jobs:1m active=0;',
      qr/\[emerg\].*invalid parameter "active=0" in "async_job_zone"/ ],
    [ 'unknown parameter',
      'async_job_zone zone=jobs:1m burst=3;',
      qr/\[emerg\].*invalid parameter "burst=3" in "async_job_zone"/ ],
    [ 'no zone=',
      'async_job_zone ttl=1h;',
      qr/\[emerg\].*"async_job_zone" needs zone=NAME:SIZE/ ],
    [ 'zone too small',
      'async_job_zone zone=jobs:32k;',
      qr/\[emerg\].*zone "jobs" of "async_job_zone" is too small for active=16 length=1000/ ],
    [ 'zone defined twice',
      "$zone\n$zone",
      qr/\[emerg\].*async_job_zone "jobs" is already defined/ ],
    [ 'a name already used by a queue zone',
      "async_queue_zone zone=jobs:1m active=1;\n$zone",
      qr/\[emerg\].*"jobs"/ ],
    [ 'bad async_job_max_wait',
      server('async_job_max_wait forever;'),
      qr/\[emerg\].*"async_job_max_wait" directive invalid value/ ],
    [ 'async_job_max_wait above a day',
      server('async_job_max_wait 2d;'),
      qr/\[emerg\].*invalid value "2d" in "async_job_max_wait": must be between 0 and 86400000 ms/ ],
    [ 'ttl in years, which nginx refuses for ms values',
      'async_job_zone zone=jobs:1m ttl=1y;',
      qr/\[emerg\].*invalid parameter "ttl=1y" in "async_job_zone"/ ],
    [ 'async_job outside a location',
      "$zone\n" . server('async_job jobs /w;'),
      qr/\[emerg\].*"async_job" directive is not allowed here/ ],
);

for my $case (@cases) {
    my ($name, $http, $want) = @$case;
    my ($rc, $out) = $ng->check_config(http => $http);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $want, "$name: the message names directive and value")
        or diag $out;
}

my ($rc, $out) = $ng->check_config(http => "$zone\n" . server(
    "$status location /s { async_job jobs /w wait=2s; async_job_callback /cb; }"
    . ' location /w { internal; echo ok; } location /cb { internal; echo ok; }'
    . ' async_job_max_wait 30s;'));
is($rc, 0, 'a complete configuration passes') or diag $out;

done_testing;
