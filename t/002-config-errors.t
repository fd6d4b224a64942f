# Bad configuration fails `nginx -t` with an [emerg] that names the
# directive and the value.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use AsyncNginx;

my $ng = AsyncNginx->new(name => 'config-errors', workers => 1);

sub server { "server { listen 127.0.0.1:\$PORT; $_[0] }" }

my @cases = (
    [ 'zone without active or per_cpu',
      'async_queue_zone zone=a:1m;',
      qr/\[emerg\].*"async_queue_zone" "a" needs exactly one of active=N or per_cpu=N/ ],
    [ 'both active and per_cpu',
      'async_queue_zone zone=a:1m active=2 per_cpu=2;',
      qr/\[emerg\].*needs exactly one of active=N or per_cpu=N/ ],
    [ 'active=0',
      'async_queue_zone zone=a:1m active=0;',
      qr/\[emerg\].*invalid parameter "active=0" in "async_queue_zone"/ ],
    [ 'bad size',
      'async_queue_zone zone=a:1x active=1;',
      qr/\[emerg\].*invalid parameter "zone=a:1x" in "async_queue_zone"/ ],
    [ 'zone without size',
      'async_queue_zone zone=a active=1;',
      qr/\[emerg\].*invalid parameter "zone=a" in "async_queue_zone"/ ],
    [ 'bad time',
      'async_queue_zone zone=a:1m active=1 timeout=5q;',
      qr/\[emerg\].*invalid parameter "timeout=5q" in "async_queue_zone"/ ],
    [ 'negative length',
      'async_queue_zone zone=a:1m active=1 length=-1;',
      qr/\[emerg\].*invalid parameter "length=-1" in "async_queue_zone"/ ],
    [ 'unknown parameter',
      'async_queue_zone zone=a:1m active=1 burst=5;',
      qr/\[emerg\].*invalid parameter "burst=5" in "async_queue_zone"/ ],
    [ 'zone defined twice',
      "async_queue_zone zone=a:1m active=1;\nasync_queue_zone zone=a:1m active=2;",
      qr/\[emerg\].*async_queue_zone "a" is already defined/ ],
    [ 'zone too small for its length',
      'async_queue_zone zone=a:32k active=1 length=1000;',
      qr/\[emerg\].*zone "a" of "async_queue_zone" is too small for length=1000/ ],
    [ 'unknown zone',
      server('location / { async_queue nosuch; }'),
      qr/\[emerg\].*unknown async_queue_zone "nosuch" in "async_queue"/ ],
    [ 'status below 400',
      "async_queue_zone zone=a:1m active=1;\n" . server('async_queue_status 200;'),
      qr/\[emerg\].*value must be between 400 and 599/ ],
    [ 'status above 599',
      "async_queue_zone zone=a:1m active=1;\n" . server('async_queue_status 600;'),
      qr/\[emerg\].*value must be between 400 and 599/ ],
    [ 'status not a number',
      server('async_queue_status 5xx;'),
      qr/\[emerg\].*"async_queue_status" directive invalid number/ ],
    [ 'zone size in gigabytes, which nginx zone sizes refuse',
      'async_queue_zone zone=a:1g active=1;',
      qr/\[emerg\].*invalid parameter "zone=a:1g" in "async_queue_zone"/ ],
    [ 'bad retry-after',
      server('async_queue_retry_after soon;'),
      qr/\[emerg\].*invalid value "soon" in "async_queue_retry_after"/ ],
    [ 'zone outside http',
      server('async_queue_zone zone=a:1m active=1;'),
      qr/\[emerg\].*"async_queue_zone" directive is not allowed here/ ],
    [ 'async_status with an argument',
      server('location /s { async_status on; }'),
      qr/\[emerg\].*invalid number of arguments in "async_status" directive/ ],
);

for my $case (@cases) {
    my ($title, $http, $expect) = @$case;
    my ($rc, $out) = $ng->check_config(http => $http);
    isnt($rc, 0, "$title: nginx -t fails");
    like($out, $expect, "$title: message names the directive and value");
}

my ($rc, $out) = $ng->check_config(http => "async_queue_zone zone=a:1m per_cpu=4 length=10 timeout=1500ms;\n"
    . server('location / { async_queue a; async_queue_status 429; async_queue_retry_after 2s; }'));
is($rc, 0, 'a valid configuration passes nginx -t') or diag $out;

($rc, $out) = $ng->check_config(http => server('location / { async_queue a; }')
    . "\nasync_queue_zone zone=a:1m active=1;");
is($rc, 0, 'a location may name a zone defined further down') or diag $out;

done_testing;
