# The module reads times, sizes and numbers with nginx's own grammar: the
# same strings go through a stock nginx directive of the same kind and
# through each of the module's directives and parameters of that kind, and
# `nginx -t` must give the same verdict. The module may be stricter only
# by range (a listed value nginx takes that is out of the module's bounds),
# never by syntax.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use AsyncNginx;

my $ng = AsyncNginx->new(name => 'grammar', workers => 1);

sub server { "server { listen 127.0.0.1:\$PORT; $_[0] }" }
sub loc { server("location /x { $_[0] } location /a { return 200; }") }

my $job_zone = "async_job_zone zone=j:1m;\n";

# Each kind: the strings, nginx's reference directive, and the module's
# places of that kind with the strings nginx takes but their range does not.
# X stands for the string (always quoted, so that "" and spaces reach the
# parser as they are).
my @kinds = (
    {   kind => 'time (ms)',
        strings => [ '1', '0', '10', '30', '1ms', '500ms', '1s', '1m', '1h',
            '1d', '1w', '1M', '1y', '1g', '1k', '1.5s', '-1', '1s500ms',
            '1m30s', '1h 30m', '1 s', '', 'abc', '1m1h', '1s1s', '1ms1s',
            '9999999999999999999', '2147483648ms', '1S', 's' ],
        nginx => sub { server(qq{proxy_read_timeout "$_[0]";}) },
        ours => [
            [ 'async_fetch_timeout', sub { server(qq{async_fetch_timeout "$_[0]";}) },
              [ '0', '2147483648ms' ] ],
            [ 'async_timeout', sub { server(qq{async_timeout "$_[0]";}) },
              [ '0', '2147483648ms' ] ],
            [ 'async_job_max_wait', sub { server(qq{async_job_max_wait "$_[0]";}) },
              [ '1w', '2147483648ms' ] ],
            [ 'async_queue_retry_after', sub { server(qq{async_queue_retry_after "$_[0]";}) },
              [ '1w', '2147483648ms' ] ],
            [ 'async_queue_zone timeout=',
              sub { qq{async_queue_zone zone=q:1m active=1 "timeout=$_[0]";} },
              [ '0', '2147483648ms' ] ],
            [ 'async_job_zone ttl=', sub { qq{async_job_zone zone=j:1m "ttl=$_[0]";} },
              [ '0' ] ],
            [ 'async_fetch timeout=', sub { loc(qq{async_fetch a /a "timeout=$_[0]";}) },
              [ '0', '2147483648ms' ] ],
            [ 'async_fetch hedge=', sub { loc(qq{async_fetch a /a "hedge=$_[0]";}) },
              [ '0', '2147483648ms' ] ],
            [ 'async_job wait=',
              sub { $job_zone . server(qq{location /s/ { async_job_status j; } }
                  . qq{location /x { async_job j /a "wait=$_[0]"; } location /a { return 200; }}) },
              [ '1w', '2147483648ms' ] ],
        ],
    },
    {   kind => 'size',
        strings => [ '1', '0', '10', '1k', '1K', '1m', '1M', '1g', '1G',
            '1ms', '1s', '1.5k', '-1', '', 'abc', '1kk', '1 k', 'k',
            '9999999999999999999', '8796093022207m', '8796093022208m' ],
        nginx => sub { server(qq{client_body_buffer_size "$_[0]";}) },
        ours => [
            [ 'async_fetch_max_size', sub { server(qq{async_fetch_max_size "$_[0]";}) },
              [ '8796093022207m' ] ],
            [ 'async_job_zone max_result=',
              sub { qq{async_job_zone zone=j:1m "max_result=$_[0]";} },
              [ '0', '8796093022207m' ] ],
        ],
    },
    {   kind => 'zone size',
        strings => [ '1m', '1M', '1024k', '1024K', '1048576', '2m', '1g', '1G',
            '1.5m', '-1m', '', 'abc', '1mb', '1 m', 'm' ],
        nginx => sub { qq{limit_req_zone \$binary_remote_addr "zone=z:$_[0]" rate=1r/s;} },
        ours => [
            [ 'async_queue_zone zone=',
              sub { qq{async_queue_zone "zone=q:$_[0]" active=1 length=10;} }, [] ],
            [ 'async_job_zone zone=',
              sub { qq{async_job_zone "zone=j:$_[0]" length=10;} }, [] ],
        ],
    },
    {   kind => 'status',
        strings => [ '400', '429', '503', '599', '399', '600', '0', '-1',
            '4e2', '', 'abc', '503 ', '99999999999999999999' ],
        nginx => sub { server(qq{limit_req_status "$_[0]";}) },
        ours => [
            [ 'async_queue_status', sub { server(qq{async_queue_status "$_[0]";}) }, [] ],
        ],
    },
    {   kind => 'count',
        strings => [ '1', '10', '100', '2147483647', '0', '-1', '+1', '1k', '1.5', '',
            'abc', ' 1', '99999999999999999999' ],
        nginx => sub { qq{limit_req_zone \$binary_remote_addr zone=z:1m rate=1r/s;\n}
            . server(qq{limit_req zone=z "burst=$_[0]";}) },
        ours => [
            [ 'async_queue_zone active=',
              sub { qq{async_queue_zone zone=q:1m "active=$_[0]";} }, [] ],
            [ 'async_job_zone active=',
              sub { qq{async_job_zone zone=j:1m "active=$_[0]";} },
              [ '2147483647' ] ],
        ],
    },
);

sub verdict {
    my ($http) = @_;
    my ($rc, $out) = $ng->check_config(http => $http);
    return ($rc == 0 ? 'accepted' : 'refused', $out);
}

for my $k (@kinds) {
    my %nginx;
    for my $s (@{ $k->{strings} }) {
        ($nginx{$s}) = verdict($k->{nginx}->($s));
    }
    # the reference itself must tell good from bad, or the test proves
    # nothing
    my @took = grep { $nginx{$_} eq 'accepted' } @{ $k->{strings} };
    ok(@took > 0 && @took < @{ $k->{strings} },
        "$k->{kind}: nginx takes some strings and refuses others");

    for my $o (@{ $k->{ours} }) {
        my ($name, $conf, $range) = @$o;
        my %stricter = map { $_ => 1 } @$range;
        for my $s (@{ $k->{strings} }) {
            my ($ours, $out) = verdict($conf->($s));
            my $want = $stricter{$s} ? 'refused' : $nginx{$s};
            is($ours, $want, "$k->{kind} \"$s\": $name $want"
                . ($stricter{$s} ? ' (out of range; nginx takes it)' : ''))
                or diag $out;
            if ($ours eq 'refused') {
                like($out, qr/\[emerg\]/, "$k->{kind} \"$s\": $name says why");
            }
        }
        # a range exception must be one nginx takes, or it hides nothing
        for my $s (@$range) {
            is($nginx{$s}, 'accepted', "$k->{kind} \"$s\" is taken by nginx");
        }
    }
}

done_testing;
