package AsyncSource;

# What the module's sources declare, read from src/ the way a reviewer
# would: the directive table of the module shell, and the variables.

use strict;
use warnings;

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    return <$fh>;
}

sub command_table {
    my $shell = slurp('src/ngx_http_async_module.cpp');
    my ($table) = $shell =~
        /ngx_command_t\s+ngx_http_async_commands\[\]\s*=\s*\{(.*?)ngx_null_command/s
        or die "no ngx_http_async_commands table in src/ngx_http_async_module.cpp\n";
    return $table;
}

# Directive names, in table order.
sub directives {
    return command_table() =~ /\{\s*ngx_string\("([a-z_0-9]+)"\)/g;
}

# Variable names (without '$'), sorted, each once: every ngx_string("async_...")
# literal of src/**/*.cpp outside the directive table, whichever way it is
# registered (a ngx_http_variable_t table, a list of names for
# ngx_http_add_variable). The module names nothing else "async_...".
sub variables {
    my $table = command_table();
    my %seen;
    for my $file (glob 'src/*.cpp src/*/*.cpp') {
        my $text = slurp($file);
        $text =~ s/\Q$table\E// if $file =~ m{/ngx_http_async_module\.cpp$};
        $seen{$_}++ for $text =~ /ngx_string\("(async_[a-z_0-9]+)"\)/g;
    }
    return sort keys %seen;
}

1;
