# Bad fan-out configuration fails `nginx -t` with an [emerg] that names the
# directive and the value.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use AsyncNginx;

my $ng = AsyncNginx->new(name => 'fanout-config', workers => 1);

sub server { "server { listen 127.0.0.1:\$PORT; $_[0] }" }
sub loc { server("location /f { $_[0] } location /a { return 200; }") }

my @cases = (
    [ 'duplicate name',
      loc('async_fetch a /a; async_fetch a /a;'),
      qr/\[emerg\].*duplicate name "a" in "async_fetch"/ ],
    [ 'bad name',
      loc('async_fetch a.b /a;'),
      qr/\[emerg\].*invalid name "a\.b" in "async_fetch"/ ],
    [ 'bad per-call timeout',
      loc('async_fetch a /a timeout=5q;'),
      qr/\[emerg\].*invalid time "timeout=5q" in "async_fetch"/ ],
    [ 'zero per-call timeout',
      loc('async_fetch a /a timeout=0;'),
      qr/\[emerg\].*invalid time "timeout=0" in "async_fetch"/ ],
    [ 'bad hedge',
      loc('async_fetch a /a hedge=soon;'),
      qr/\[emerg\].*invalid time "hedge=soon" in "async_fetch"/ ],
    [ 'unknown parameter',
      loc('async_fetch a /a retries=3;'),
      qr/\[emerg\].*invalid parameter "retries=3" in "async_fetch"/ ],
    [ 'missing URI',
      loc('async_fetch a;'),
      qr/\[emerg\].*invalid number of arguments in "async_fetch" directive/ ],
    [ 'bad async_fetch_timeout',
      server('async_fetch_timeout 1x;'),
      qr/\[emerg\].*"async_fetch_timeout" directive invalid value/ ],
    [ 'async_fetch_timeout off is not a time',
      server('async_fetch_timeout off;'),
      qr/\[emerg\].*"async_fetch_timeout" directive invalid value/ ],
    [ 'async_fetch_timeout 0 is no budget',
      server('async_fetch_timeout 0;'),
      qr/\[emerg\].*invalid value "0" in "async_fetch_timeout": must be between 1 and 2147483647 ms/ ],
    [ 'async_fetch_timeout in months, which nginx refuses for ms values',
      server('async_fetch_timeout 1M;'),
      qr/\[emerg\].*"async_fetch_timeout" directive invalid value/ ],
    [ 'bad async_timeout',
      server('async_timeout forever;'),
      qr/\[emerg\].*invalid time "forever" in "async_timeout"/ ],
    [ 'bad async_aggregate',
      server('async_aggregate xml;'),
      qr/\[emerg\].*invalid value "xml"/ ],
    [ 'bad async_fetch_max_size',
      server('async_fetch_max_size 10q;'),
      qr/\[emerg\].*"async_fetch_max_size" directive invalid value/ ],
    [ 'async_fetch_max_size in gigabytes, which nginx sizes refuse',
      server('async_fetch_max_size 1g;'),
      qr/\[emerg\].*"async_fetch_max_size" directive invalid value/ ],
    [ 'async_fetch outside a location',
      server('async_fetch a /a;'),
      qr/\[emerg\].*"async_fetch" directive is not allowed here/ ],
    [ 'another content handler before async_fetch',
      loc('proxy_pass http://127.0.0.1:1; async_fetch a /a;'),
      qr/\[emerg\].*"async_fetch" in location "\/f" conflicts with another content handler/ ],
    [ 'another content handler after async_fetch',
      loc('async_fetch a /a; proxy_pass http://127.0.0.1:1;'),
      qr/\[emerg\].*"async_fetch" in location "\/f" conflicts with another content handler/ ],
    [ 'echo after async_fetch',
      loc('async_fetch a /a; echo hi;'),
      qr/\[emerg\].*"async_fetch" in location "\/f" conflicts with another content handler/ ],
    [ 'duplicate async_aggregate',
      server('async_aggregate json; async_aggregate concat;'),
      qr/\[emerg\].*"async_aggregate" directive is duplicate/ ],
);

for my $case (@cases) {
    my ($title, $http, $expect) = @$case;
    my ($rc, $out) = $ng->check_config(http => $http);
    isnt($rc, 0, "$title: nginx -t fails");
    like($out, $expect, "$title: message names the directive and value");
}

my ($rc, $out) = $ng->check_config(http => "async_fetch_timeout 2s;\n"
    . "async_timeout off;\nasync_aggregate json;\nasync_fetch_max_size 64k;\n"
    . server('async_timeout 5s; location /f { async_aggregate multipart; '
        . 'async_fetch a-1 /a?x=$arg_x timeout=1s optional hedge=100ms; '
        . 'async_fetch B_2 /a; } location /a { return 200; }'));
is($rc, 0, 'a valid configuration passes nginx -t') or diag $out;

done_testing;
