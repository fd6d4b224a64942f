package Test::Nginx::Subset::Config;

# Server root and nginx.conf generation for the project's bundled
# Test::Nginx::Socket (see t/lib/Test/Nginx/Socket.pm).
#
# Nothing in here talks to nginx or to the TAP stream: the functions take
# what they need as arguments and die with a one-line message on bad input,
# which Test::Nginx::Socket turns into a BAIL_OUT carrying the block name.

use strict;
use warnings;

use Exporter 'import';
use File::Path qw(make_path remove_tree);
use IO::Socket::INET ();

our @EXPORT_OK = qw(
    parse_time expand_env_in_text pick_free_port
    reset_server_root parse_user_files write_user_files
    render_nginx_conf
);

# "500ms" -> 0.5, "2s" -> 2, "1.5" -> 1.5 (seconds), undef stays undef.
sub parse_time {
    my ($tm) = @_;
    return undef unless defined $tm;
    if ($tm =~ /^\s*([\d.]+)\s*ms\s*$/) {
        return $1 / 1000;
    }
    if ($tm =~ /^\s*([\d.]+)\s*s\s*$/) {
        return $1;
    }
    return $tm;
}

# A port nothing listens on yet, for $TEST_NGINX_RAND_PORT_N.  $used holds
# ports already handed out so two variables never share one.
sub pick_free_port {
    my ($addr, $used) = @_;
    for (1 .. 1000) {
        my $port = 1985 + int rand(65535 - 1985);
        next if $used->{$port};
        my $sock = IO::Socket::INET->new(
            LocalAddr => $addr,
            LocalPort => $port,
            Proto     => 'tcp',
        );
        next unless $sock;
        close $sock;
        return $port;
    }
    return undef;
}

# Replaces every $TEST_NGINX_FOO in $text with the environment variable of
# that name, as upstream does for config, http_config, main_config,
# post_main_config and user_files.  $TEST_NGINX_RAND_PORT_<N> gets a free
# port, the same one for every use of that name within one block
# ($rand_ports is per block).  An unset variable is an error, not "".
sub expand_env_in_text {
    my ($text, $rand_ports, $addr, $server_port) = @_;
    return undef unless defined $text;

    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        _expand_one($1, $rand_ports, $addr, $server_port)
    }ge;

    return $text;
}

sub _expand_one {
    my ($var, $rand_ports, $addr, $server_port) = @_;

    if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
        return $rand_ports->{$var} if defined $rand_ports->{$var};
        my %used = ($server_port => 1, map { $_ => 1 } values %$rand_ports);
        my $port = pick_free_port($addr, \%used)
            // die "Cannot find an available listening port number for $var.\n";
        return $rand_ports->{$var} = $port;
    }

    die "No environment $var defined.\n" unless defined $ENV{$var};
    return $ENV{$var};
}

# Empties the parts of the server root a previous block may have left
# (conf, html, logs, *_cache, *_temp) and recreates conf/, html/ and logs/.
# Other entries are kept on purpose: TEST_NGINX_SERVROOT may point at a
# directory that holds more than our files.
sub reset_server_root {
    my ($root) = @_;
    my %dir = map { $_ => "$root/$_" } qw(conf html logs);

    if (-d $root) {
        remove_tree(values %dir, glob("$root/*_cache"), glob("$root/*_temp"));
    }

    for my $d ($root, values %dir) {
        next if -d $d;
        make_path($d) or die "Failed to do mkdir $d: $!\n";
    }

    # Same page as upstream, so a test fetching "/" sees what it expects.
    _write_file("$dir{html}/index.html",
        '<html><head><title>It works!</title></head>'
        . '<body>It works!</body></html>');
}

# "--- user_files" text -> [[name, body, date], ...].  A line containing
# ">>> NAME [DATE]" starts a file; every other line belongs to the body of
# the current file.  DATE is a touch(1) -t stamp, interpreted as GMT.
sub parse_user_files {
    my ($raw) = @_;
    my (@files, $cur);
    for my $line (split /^/m, $raw) {
        if ($line =~ />>> (\S+)(?:\s+(.+))?/) {
            $cur = [$1, undef, $2];
            push @files, $cur;
        } elsif ($cur) {
            $cur->[1] .= $line;
        }
    }
    return \@files;
}

# Writes the files of "--- user_files" (a string, or an array of
# [name, body, date] from "--- user_files eval").  Relative names land in
# $html_dir, absolute names where they say.  $expand is applied to bodies.
sub write_user_files {
    my ($html_dir, $files, $expand) = @_;

    if (!ref $files) {
        $files = parse_user_files($files);
    } elsif (ref $files ne 'ARRAY') {
        die "wrong value type: " . ref($files)
            . ", only scalar or ARRAY are accepted\n";
    }

    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        my $path = $fname =~ m{^/} ? $fname : "$html_dir/$fname";

        if ($path =~ m{^(.*)/} && !-d $1) {
            make_path($1) or die "Cannot create directory $1: $!\n";
        }

        _write_file($path, $expand->($body // ''));

        if ($date) {
            local $ENV{TZ} = 'GMT';
            system('touch', '-t', $date, $path) == 0
                or die "Failed to run touch -t '$date' $path\n";
        }
    }
}

sub _write_file {
    my ($path, $data) = @_;
    open my $out, '>', $path or die "Cannot open $path for writing: $!\n";
    binmode $out;
    print $out $data;
    close $out or die "Cannot write $path: $!\n";
}

# Builds nginx.conf.  The layout follows upstream's generated file (same
# directives, same order, same "server" block around "--- config") so that
# test configs behave the same; the differences are listed in Socket.pm.
#
# %o keys: load_modules (list), workers, master, error_log, log_level,
# pid_file, env (list), main_config, http_config, access_log, listen,
# server_name, preamble, config, root_dir (undef: no "location /"),
# post_main_config, worker_connections, event_type, user (undef: none).
sub render_nginx_conf {
    my (%o) = @_;
    my $conf = '';

    # load_module must precede any block that uses the modules, so the
    # lines go first instead of after main_config.
    $conf .= "load_module $_;\n" for @{ $o{load_modules} || [] };

    # daemon off: nginx stays our child process (see Subset/Server.pm).
    $conf .= <<"_EOC_";
worker_processes  $o{workers};
daemon off;
master_process $o{master};
error_log $o{error_log} $o{log_level};
pid       $o{pid_file};
_EOC_

    for my $v (@{ $o{env} || [] }) {
        $conf .= $v =~ /\s/ ? "env '$v';\n" : "env $v;\n";
    }

    (my $server_name = $o{server_name}) =~ s/(['\\])/\\$1/g;

    $conf .= <<"_EOC_";

$o{main_config}

http {
    access_log $o{access_log};

    default_type text/plain;
    keepalive_timeout  68;

$o{http_config}

    server {
        listen          $o{listen};
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$o{preamble}
        # End preamble config...

        # Begin test case config...
$o{config}
        # End test case config.

_EOC_

    if (defined $o{root_dir}) {
        $conf .= <<"_EOC_";
        location / {
            root $o{root_dir};
            index index.html index.htm;
        }
_EOC_
    }

    $conf .= "    }\n}\n\n$o{post_main_config}\n\nevents {\n"
           . "    accept_mutex off;\n\n"
           . "    worker_connections  $o{worker_connections};\n";
    $conf .= "    use $o{event_type};\n" if $o{event_type};
    $conf .= "}\n";
    $conf .= "user $o{user};\n" if defined $o{user};

    return $conf;
}

1;
