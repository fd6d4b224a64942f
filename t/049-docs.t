# docs/directives.md and the code cannot drift apart: every directive of
# the module's table has a "## name" section in the nginx.org layout and
# every section names a directive; every $async_* variable registered in
# src/ has a "## $name" section and every such section a variable.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use AsyncSource;

sub slurp { AsyncSource::slurp(@_) }

# --- the code -------------------------------------------------------------

my @directives = AsyncSource::directives();
ok(@directives >= 5, scalar(@directives) . ' directives in the table');
my %variables = map { $_ => 1 } AsyncSource::variables();
ok(keys %variables >= 3, scalar(keys %variables) . ' variables registered');

# --- the docs -------------------------------------------------------------

my $doc = slurp('docs/directives.md');
my (%sections, @order);
{
    my $name;
    for my $line (split /\n/, $doc) {
        if ($line =~ /^## (\S+)\s*$/) {
            $name = $1;
            push @order, $name;
            $sections{$name} = '';
            next;
        }
        $name = undef if $line =~ /^# /;
        $sections{$name} .= "$line\n" if defined $name;
    }
}
my @doc_directives = grep { !/^\$/ } @order;
my @doc_variables = map { substr $_, 1 } grep { /^\$/ } @order;

# --- both directions --------------------------------------------------------

my %in_table = map { $_ => 1 } @directives;
my %in_doc = map { $_ => 1 } @doc_directives;
is_deeply([ grep { !$in_doc{$_} } @directives ], [],
    'every directive of the table has a "## name" section');
is_deeply([ grep { !$in_table{$_} } @doc_directives ], [],
    'every "## name" section is a directive of the table');
my %count;
$count{$_}++ for @order;
is_deeply([ grep { $count{$_} > 1 } sort keys %count ], [],
    'no directive or variable documented twice');

for my $d (grep { $in_doc{$_} } @directives) {
    my $s = $sections{$d};
    like($s, qr/^    Syntax:\s+\Q$d\E\b.*;$/m, "$d: Syntax line names it");
    like($s, qr/^    Default:\s+\S/m, "$d: Default line");
    like($s, qr/^    Context:\s+(?:http|server|location|if in location)(?:, (?:http|server|location|if in location))*(?: \(.+\))?$/m,
        "$d: Context line");
}

my %doc_var = map { $_ => 1 } @doc_variables;
is_deeply([ grep { !$doc_var{$_} } sort keys %variables ], [],
    'every registered variable has a "## $name" section');
is_deeply([ grep { !$variables{$_} } @doc_variables ], [],
    'every "## $name" section is a registered variable');
for my $v (grep { $doc_var{$_} } sort keys %variables) {
    like($sections{"\$$v"}, qr/\S/, "\$$v: described");
}

# Every $async_* name the docs mention anywhere exists.
my %mentioned;
for my $file ('docs/directives.md', glob('docs/*.md'), 'README.md') {
    next unless -f $file;
    $mentioned{$_} = $file for slurp($file) =~ /\$(async_[a-z_0-9]+)/g;
}
is_deeply([ sort grep { !$variables{$_} } keys %mentioned ], [],
    'no document mentions a variable that does not exist')
    or diag explain { map { $_ => $mentioned{$_} } grep { !$variables{$_} } keys %mentioned };

done_testing;
