# Bad values of priority=, active=auto, min=, max=, discipline= and the
# CoDel times fail `nginx -t` with an [emerg].
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use AsyncNginx;

my $ng = AsyncNginx->new(name => 'queue-tuning-errors', workers => 1);

sub server { "server { listen 127.0.0.1:\$PORT; $_[0] }" }
my $zone = "async_queue_zone zone=a:1m active=1;\n";

my @cases = (
    [ 'priority=9',
      $zone . server('location / { async_queue a priority=9; }'),
      qr/\[emerg\].*invalid priority "9" in "async_queue": must be between 0 and 7/ ],
    [ 'priority=-1',
      $zone . server('location / { async_queue a priority=-1; }'),
      qr/\[emerg\].*invalid priority "-1" in "async_queue"/ ],
    [ 'priority without a value',
      $zone . server('location / { async_queue a priority=; }'),
      qr/\[emerg\].*invalid parameter "priority=" in "async_queue"/ ],
    [ 'unknown async_queue parameter',
      $zone . server('location / { async_queue a weight=2; }'),
      qr/\[emerg\].*invalid parameter "weight=2" in "async_queue"/ ],
    [ 'priority with off',
      server('location / { async_queue off priority=1; }'),
      qr/\[emerg\].*"async_queue" directive takes no priority= with "off"/ ],
    [ 'min above max',
      'async_queue_zone zone=a:1m active=auto min=50 max=10;',
      qr/\[emerg\].*"async_queue_zone": min=50 is above max=10/ ],
    [ 'active=auto with per_cpu',
      'async_queue_zone zone=a:1m active=auto per_cpu=4;',
      qr/\[emerg\].*"async_queue_zone": active=auto excludes per_cpu=N/ ],
    [ 'active=auto with active=N',
      'async_queue_zone zone=a:1m active=auto active=4;',
      qr/\[emerg\].*"async_queue_zone": active=auto excludes active=N/ ],
    [ 'min without active=auto',
      'async_queue_zone zone=a:1m active=4 min=2;',
      qr/\[emerg\].*"async_queue_zone": min= and max= need active=auto/ ],
    [ 'min=0',
      'async_queue_zone zone=a:1m active=auto min=0;',
      qr/\[emerg\].*invalid parameter "min=0" in "async_queue_zone"/ ],
    [ 'max not a number',
      'async_queue_zone zone=a:1m active=auto max=lots;',
      qr/\[emerg\].*invalid parameter "max=lots" in "async_queue_zone"/ ],
    [ 'codel_target=0',
      'async_queue_zone zone=a:1m active=1 discipline=codel codel_target=0;',
      qr/\[emerg\].*invalid parameter "codel_target=0" in "async_queue_zone"/ ],
    [ 'codel_interval not a time',
      'async_queue_zone zone=a:1m active=1 discipline=codel codel_interval=5q;',
      qr/\[emerg\].*invalid parameter "codel_interval=5q" in "async_queue_zone"/ ],
    [ 'codel times without discipline=codel',
      'async_queue_zone zone=a:1m active=1 codel_target=10ms;',
      qr/\[emerg\].*codel_target= and codel_interval= need discipline=codel/ ],
    [ 'unknown discipline',
      'async_queue_zone zone=a:1m active=1 discipline=lifo;',
      qr/\[emerg\].*invalid parameter "discipline=lifo" in "async_queue_zone"/ ],
);

for my $case (@cases) {
    my ($title, $http, $expect) = @$case;
    my ($rc, $out) = $ng->check_config(http => $http);
    isnt($rc, 0, "$title: nginx -t fails");
    like($out, $expect, "$title: message names the directive and value");
}

my ($rc, $out) = $ng->check_config(http =>
    "async_queue_zone zone=a:1m active=auto min=2 max=64 discipline=codel "
    . "codel_target=10ms codel_interval=1s;\n"
    . "async_queue_zone zone=b:1m active=auto discipline=fifo;\n"
    . "map \$http_x_tier \$tier { default 0; gold 7; }\n"
    . server('location / { async_queue a priority=$tier; } '
        . 'location /b { async_queue b priority=3; }'));
is($rc, 0, 'a valid configuration passes nginx -t') or diag $out;

done_testing;
