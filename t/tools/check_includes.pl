#!/usr/bin/env perl
# The dependency rule of src/ (docs/architecture.md), checked over the
# #include lines:
#
#   core/      includes only core/ (and the C++ library): no nginx
#   the seam   src/ngx_async.hpp: the only include of nginx's C headers
#   the shell header  src/ngx_http_async_module.hpp: only the seam
#   common/    common/, core/, the seam, the shell header
#   a concern  (queue/, fanout/, job/, status/): itself, common/, core/,
#              the seam, the shell header; never another concern
#   the shell  src/ngx_http_async_module.cpp: anything; the one place that
#              knows every concern and wires them together
#
#   t/tools/check_includes.pl [SRC_DIR]    exit 1 and one line per breach
use strict;
use warnings;
use File::Find;

my $src = shift // 'src';
my @concerns = qw(queue fanout job status);
my %concern = map { $_ => 1 } @concerns;
my $seam = 'ngx_async.hpp';
my $shell_header = 'ngx_http_async_module.hpp';
my $shell = 'ngx_http_async_module.cpp';

# What a file may include, by where it is: a predicate over the included
# path (relative to src/).
sub rule_for {
    my ($rel) = @_;
    return (undef, 'anything') if $rel eq $shell;
    return (sub { 0 }, 'nothing of the module') if $rel eq $seam;
    return (sub { $_[0] eq $seam }, 'only the seam') if $rel eq $shell_header;
    my ($dir) = $rel =~ m{^([^/]+)/};
    return () unless defined $dir;
    my $base = sub {
        my ($inc) = @_;
        return $inc eq $seam || $inc eq $shell_header || $inc =~ m{^(core|common)/};
    };
    return (sub { $_[0] =~ m{^core/} }, 'only core/') if $dir eq 'core';
    return ($base, 'common/, core/, the seam and the shell header')
        if $dir eq 'common';
    if ($concern{$dir}) {
        return (sub { $base->($_[0]) || $_[0] =~ m{^\Q$dir\E/} },
            "itself, common/, core/, the seam and the shell header");
    }
    return ();
}

my @files;
find(sub { push @files, $File::Find::name if /\.(?:cpp|hpp)\z/ }, $src);

my @breaches;
for my $file (sort @files) {
    (my $rel = $file) =~ s{^\Q$src\E/}{};
    my ($may, $what) = rule_for($rel);
    open my $fh, '<', $file or die "$file: $!";
    while (my $line = <$fh>) {
        if ($line =~ /^\s*#\s*include\s*"([^"]+)"/) {
            my $inc = $1;
            next unless $may;
            push @breaches, "$file:$.: includes \"$inc\"; "
                . "$rel may include $what" unless $may->($inc);
            next;
        }
        # nginx's own headers go through the one seam
        if ($line =~ /^\s*#\s*include\s*<(ngx_\w+\.h)>/ && $rel ne $seam) {
            push @breaches, "$file:$.: includes <$1>; nginx's headers come "
                . "only through $seam";
        }
    }
    close $fh;
}

print "$_\n" for @breaches;
exit(@breaches ? 1 : 0);
