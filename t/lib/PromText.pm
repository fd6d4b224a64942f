package PromText;

# Checks of the Prometheus text exposition format 0.0.4 for the tests of
# async_status: a strict parser of our own (grouping, HELP/TYPE, names,
# histogram invariants) and the reference parser of the Debian package
# python3-prometheus-client.

use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempfile);

our @EXPORT_OK = qw(parse reference_parser reference_check sample);

my $name_re  = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $label_re = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $value_re = qr/[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|Inf|NaN)/;

# Parses the text; returns { families => { NAME => {type, help, samples =>
# [ {name, labels => {..}, value} ]} }, order => [NAME...], errors => [..] }.
sub parse {
    my ($text) = @_;
    my (%fam, @order, @errors, $current, %closed);
    my $n = 0;
    push @errors, 'does not end with a newline' unless $text =~ /\n\z/;
    for my $line (split /\n/, $text) {
        $n++;
        if ($line =~ /^# HELP ($name_re) (.*)$/) {
            my $f = $1;
            push @errors, "line $n: second HELP for $f" if $fam{$f}{help};
            push @errors, "line $n: $f appears again after other families"
                if $closed{$f};
            $fam{$f}{help} = $2;
            push @order, $f unless grep { $_ eq $f } @order;
            $closed{$current} = 1 if defined $current && $current ne $f;
            $current = $f;
            next;
        }
        if ($line =~ /^# TYPE ($name_re) (counter|gauge|histogram|summary|untyped)$/) {
            my $f = $1;
            push @errors, "line $n: TYPE after samples of $f"
                if $fam{$f}{samples} && @{ $fam{$f}{samples} };
            $fam{$f}{type} = $2;
            push @order, $f unless grep { $_ eq $f } @order;
            $closed{$current} = 1 if defined $current && $current ne $f;
            $current = $f;
            next;
        }
        next if $line =~ /^#/;
        push @errors, "line $n: empty line" and next if $line eq '';
        my ($name, $labels, $value) =
            $line =~ /^($name_re)(?:\{(.*)\})? ($value_re)(?: -?\d+)?$/
            or do { push @errors, "line $n: not a sample: $line"; next };
        my %labels;
        if (defined $labels) {
            my $rest = $labels;
            while (length $rest) {
                $rest =~ s/^($label_re)="((?:[^"\\\n]|\\["\\n])*)"(,|$)//
                    or do { push @errors, "line $n: bad labels: {$labels}"; last };
                my ($k, $v) = ($1, $2);
                push @errors, "line $n: duplicate label $k" if exists $labels{$k};
                $v =~ s/\\(["\\n])/$1 eq 'n' ? "\n" : $1/ge;
                $labels{$k} = $v;
            }
        }
        my $f = $name;
        if (!$fam{$f} || !$fam{$f}{type}) {
            ($f) = grep { $fam{$_}{type} && ($fam{$_}{type} eq 'histogram'
                ? $name =~ /^\Q$_\E_(?:bucket|sum|count)$/
                : 0) }
                keys %fam;
            $f //= $name;
        }
        push @errors, "line $n: sample $name outside its family ($f)"
            unless defined $current && $current eq $f;
        push @errors, "line $n: sample $name without TYPE" unless $fam{$f}{type};
        push @errors, "line $n: sample $name without HELP" unless $fam{$f}{help};
        push @{ $fam{$f}{samples} },
            { name => $name, labels => \%labels, value => $value };
    }

    for my $f (@order) {
        my $t = $fam{$f}{type} // next;
        my @s = @{ $fam{$f}{samples} || [] };
        if ($t eq 'counter') {
            push @errors, "$f: a counter's name ends in _total"
                unless $f =~ /_total$/;
            for (@s) {
                push @errors, "$f: counter sample $_->{name} is not $f"
                    unless $_->{name} eq $f;
                push @errors, "$f: negative counter" if $_->{value} < 0;
            }
        }
        if ($t eq 'histogram') {
            my %series;
            for (@s) {
                my %l = %{ $_->{labels} };
                my $le = delete $l{le};
                my $key = join ',', map { "$_=$l{$_}" } sort keys %l;
                if ($_->{name} eq "${f}_bucket") {
                    push @errors, "$f: bucket without le" unless defined $le;
                    push @{ $series{$key}{buckets} }, [$le, $_->{value}];
                } elsif ($_->{name} eq "${f}_count") {
                    $series{$key}{count} = $_->{value};
                } elsif ($_->{name} eq "${f}_sum") {
                    $series{$key}{sum} = $_->{value};
                }
            }
            for my $key (sort keys %series) {
                my $sr = $series{$key};
                my @b = @{ $sr->{buckets} || [] };
                push @errors, "$f\{$key}: no buckets" and next unless @b;
                push @errors, "$f\{$key}: last bucket is not +Inf"
                    unless $b[-1][0] eq '+Inf';
                for my $i (1 .. $#b) {
                    push @errors, "$f\{$key}: le not increasing at $b[$i][0]"
                        unless $b[$i][0] eq '+Inf' || $b[$i][0] > $b[$i - 1][0];
                    push @errors, "$f\{$key}: buckets not cumulative at $b[$i][0]"
                        unless $b[$i][1] >= $b[$i - 1][1];
                }
                push @errors, "$f\{$key}: +Inf bucket != _count"
                    unless defined $sr->{count} && $b[-1][1] == $sr->{count};
                push @errors, "$f\{$key}: no _sum" unless defined $sr->{sum};
            }
        }
    }
    return { families => \%fam, order => \@order, errors => \@errors };
}

# The value of one sample: sample($parsed, NAME, {label => value, ...}).
sub sample {
    my ($p, $name, $want) = @_;
    $want //= {};
    for my $f (values %{ $p->{families} }) {
        for my $s (@{ $f->{samples} || [] }) {
            next unless $s->{name} eq $name;
            next unless keys %{ $s->{labels} } == keys %$want;
            next if grep { ($s->{labels}{$_} // "\0") ne $want->{$_} } keys %$want;
            return $s->{value};
        }
    }
    return undef;
}

# The interpreter that has Debian's prometheus_client, or undef.
sub reference_parser {
    for my $py ('/usr/bin/python3', 'python3') {
        my $out = `$py -c 'import prometheus_client.parser' 2>&1`;
        return $py if $? == 0;
    }
    return undef;
}

# Runs the reference parser; returns (ok, report): one line per sample,
# "family type name labels value", or the parser's error.
sub reference_check {
    my ($text) = @_;
    my $py = reference_parser() or return (0, 'python3-prometheus-client missing');
    my ($fh, $file) = tempfile(UNLINK => 1);
    print $fh $text;
    close $fh;
    my $script = <<'PY';
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print(fam.name, fam.type, s.name, labels, repr(float(s.value)))
PY
    my $out = `$py -c '$script' '$file' 2>&1`;
    return ($? == 0, $out);
}

1;
