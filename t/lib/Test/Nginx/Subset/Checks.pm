package Test::Nginx::Subset::Checks;

# The TAP-emitting checks of the bundled Test::Nginx::Socket.
#
# How many tests each check emits, and under which names, is what makes a
# .t file's "plan tests => repeat_each() * blocks() * N" come out the same
# here and under upstream Test::Nginx, so every rule below mirrors upstream
# (the rules are summed up in the header of Socket.pm).  When nginx could
# not run a block ("dry run", e.g. TEST_NGINX_IGNORE_MISSING_DIRECTIVES)
# each check is reported as a skip instead, so counts do not change.
#
# Checks receive one hash ref $t:
#   block, name, dry_run (false or the reason), rep (repeat index),
#   idx (response index in this repeat), need_array (several responses,
#   so expectations must be arrays), res (HTTP::Response or undef),
#   raw_headers, server_port, client_port, plain_is (no_long_string),
#   bail (code ref: BAIL_OUT with a message), body_checks (code refs from
#   add_response_body_check), error_log_lines / access_log_lines (code refs
#   returning the new lines of the log as an array ref).
#
# Test::Base block accessors return an empty list for a missing section,
# so they are always called in scalar context ("scalar $b->foo") where
# they appear in an argument list.

use strict;
use warnings;

use Exporter 'import';
use Test::More ();
use Test::Base ();
use Digest::MD5 ();
use Digest::SHA ();
use Encode ();

our @EXPORT_OK = qw(
    is_str check_error_code check_raw_response_headers
    check_response_headers transform_response_body check_response_body
    check_error_log check_access_log check_stap fail_extra
);

# Test::Base's is() shows a line diff for multi-line strings, which is the
# closest we have to upstream's Test::LongString (not packaged in Debian).
sub is_str {
    my ($got, $expected, $desc, $plain) = @_;
    return Test::More::like($got, $expected, $desc)
        if ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $plain;
    return Test::Base::is($got, $expected, $desc);
}

# A failure that upstream reports as an extra test (timeouts, broken
# chunked bodies, ...).  Upstream also sets Test::Builder's no_ending
# there, which hides the plan mismatch but makes the script exit 0 despite
# the failure; we leave the ending alone so the exit status is non-zero.
sub fail_extra {
    my ($msg) = @_;
    Test::More::fail($msg);
}

# Runs $code as one test, or reports one skip when $dry_run is set.
sub _one_test {
    my ($dry_run, $why, $code) = @_;
  SKIP: {
        Test::More::skip("$why - tests skipped due to $dry_run", 1) if $dry_run;
        $code->();
    }
}

# The value of a check section for the current response: with several
# responses the section must be an array with one entry per response.
sub _indexed {
    my ($t, $value) = @_;
    if ($t->{need_array}) {
        return $value->[ $t->{idx} ] if ref $value eq 'ARRAY';
        $t->{bail}->("$t->{name} - You asked for many requests, the "
                     . "expected results should be arrays as well.");
    }
    return ref $value eq 'ARRAY' ? $value->[0] : $value;
}

sub _subst_ports {
    my ($t, $s) = @_;
    $s =~ s/\$ServerPortForClient\b/$t->{client_port}/g;
    $s =~ s/\$ServerPort\b/$t->{server_port}/g;
    return $s;
}

# One test: the status code (error_code_like, error_code, or 200).
sub check_error_code {
    my ($t) = @_;
    my ($b, $name) = @$t{qw(block name)};
    my $code = ($t->{res} && $t->{res}->code) || '';

    _one_test $t->{dry_run}, $name, sub {
        if (defined $b->error_code_like) {
            my $pat = _indexed($t, scalar $b->error_code_like);
            Test::More::like($code, qr/$pat/sm, "$name - status code ok");
        } elsif (defined $b->error_code) {
            Test::More::is($code, _indexed($t, scalar $b->error_code),
                           "$name - status code ok");
        } else {
            Test::More::is($code, 200, "$name - status code ok");
        }
    };
}

# One test each for raw_response_headers_like / _unlike when present.
sub check_raw_response_headers {
    my ($t) = @_;
    my ($b, $name) = @$t{qw(block name)};
    my $raw = $t->{raw_headers} // '';

    if (defined $b->raw_response_headers_like) {
        my $pat = _indexed($t, scalar $b->raw_response_headers_like);
        _one_test $t->{dry_run}, "$name - raw_response_headers_like", sub {
            Test::More::like($raw, qr/$pat/s, "$name - raw resp headers like");
        };
    }
    if (defined $b->raw_response_headers_unlike) {
        my $pat = _indexed($t, scalar $b->raw_response_headers_unlike);
        _one_test $t->{dry_run}, "$name - raw_response_headers_unlike", sub {
            Test::More::unlike($raw, qr/$pat/s,
                               "$name - raw resp headers unlike");
        };
    }
}

# "Key: value" / "!Key" lines -> ([key, value-or-undef], ...), in order,
# one entry per distinct key (upstream keeps them in a hash).  A line
# without a colon means "absent", like "!Key".
sub _expected_headers {
    my ($text) = @_;
    my (@order, %val);
    for my $line (split /\n/, $text // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        my ($key, $val);
        if ($line =~ s/^!\s*//) {
            $key = $line;
        } else {
            ($key, $val) = split /\s*:\s*/, $line, 2;
        }
        push @order, $key unless exists $val{$key};
        $val{$key} = $val;
    }
    return map { [$_, $val{$_}] } @order;
}

# One test per header named in response_headers, or else (never both) per
# header in response_headers_like.
sub check_response_headers {
    my ($t) = @_;
    my ($b, $name, $res) = @$t{qw(block name res)};
    my $raw = $t->{raw_headers} // '';
    my $actual = sub { my $v = $res ? $res->header($_[0]) : undef; $v // '' };

    if (defined $b->response_headers) {
        for my $h (_expected_headers(_indexed($t, scalar $b->response_headers))) {
            my ($key, $val) = @$h;
            _one_test $t->{dry_run}, "$name - response_headers", sub {
                if (!defined $val) {
                    Test::More::unlike($raw, qr/^\s*\Q$key\E\s*:/ms,
                        "$name - header $key not present in the raw headers");
                } else {
                    Test::More::is($actual->($key), _subst_ports($t, $val),
                                   "$name - header $key ok");
                }
            };
        }

    } elsif (defined $b->response_headers_like) {
        for my $h (_expected_headers(_indexed($t, scalar $b->response_headers_like))) {
            my ($key, $val) = @$h;
            $val //= '';
            _one_test $t->{dry_run}, "$name - response_headers_like", sub {
                Test::More::like($actual->($key), qr/^$val$/,
                                 "$name - header $key like ok");
            };
        }
    }
}

my %BodyFilter = (
    md5_hex  => \&Digest::MD5::md5_hex,
    sha1_hex => \&Digest::SHA::sha1_hex,
    uc       => sub { uc $_[0] },
    lc       => sub { lc $_[0] },
    ucfirst  => sub { ucfirst $_[0] },
    lcfirst  => sub { lcfirst $_[0] },
    length   => sub { length $_[0] },
);

# Applies --- response_body_filters (names or code refs; a 2-D array gives
# one filter list per response) to the body before it is compared.
sub transform_response_body {
    my ($t) = @_;
    my ($b, $name, $res) = @$t{qw(block name res)};
    my $filters = $b->response_body_filters;
    return unless $res && defined $res->content && defined $filters;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    if (ref $filters->[0] eq 'ARRAY') {
        $filters = $filters->[ $t->{idx} ]
            // $t->{bail}->("$name - the ---response_body_filters "
                            . "two-dimensional array unmatch the specified "
                            . "request($t->{idx})");
    }

    my $body = $res->content;
    for my $f (ref $filters eq 'ARRAY' ? @$filters : ($filters)) {
        my $code = ref $f eq 'CODE' ? $f : $BodyFilter{$f}
            or $t->{bail}->("$name - unknown filter, \"$f\", specified in "
                            . "the --- response_body_filters section");
        $body = $code->($body);
    }
    $res->content($body);
}

# One test for response_body (or the deprecated response_body_eval), else
# one for response_body_like / response_body_unlike; then the checks added
# with add_response_body_check.
sub check_response_body {
    my ($t) = @_;
    my ($b, $name, $res) = @$t{qw(block name res)};
    my $content = $res ? $res->content : undef;
    my $where = "(repeated req $t->{rep}, req $t->{idx})";

    if (defined $b->response_body || defined $b->response_body_eval) {
        my $expected = _expected_body($t);
        _one_test $t->{dry_run}, "$name - response_body", sub {
            if (ref $expected) {
                Test::More::like($content, $expected,
                                 "$name - response_body - like $where");
            } else {
                is_str($content, $expected,
                       "$name - response_body - response is expected $where",
                       $t->{plain_is});
            }
        };

    } elsif (defined $b->response_body_like
             || defined $b->response_body_unlike) {
        my $type = defined $b->response_body_like ? 'like' : 'unlike';
        my $spec = $type eq 'like' ? scalar $b->response_body_like
                                   : scalar $b->response_body_unlike;
        my $pat = _subst_ports($t, _indexed($t, $spec) // '');
        my $summary = _summary($content);
        _one_test $t->{dry_run}, "$name - response_body_$type", sub {
            my $cmp = $type eq 'like' ? \&Test::More::like
                                      : \&Test::More::unlike;
            $cmp->($content, qr/$pat/s,
                   "$name - response_body_$type - response is expected "
                   . "($summary)");
        };
    }

    $_->($b, $content, $t->{idx}, $t->{rep}, $t->{dry_run})
        for @{ $t->{body_checks} || [] };
}

sub _expected_body {
    my ($t) = @_;
    my ($b, $name) = @$t{qw(block name)};
    my $expected;

    if ($b->response_body_eval) {
        Test::More::diag("$name - response_body_eval is DEPRECATED. "
                         . "Use response_body eval instead.");
        $expected = eval _indexed($t, scalar $b->response_body_eval);
        warn $@ if $@;
    } else {
        $expected = _indexed($t, scalar $b->response_body);
    }

    Encode::from_to($expected, 'UTF-8', scalar $b->charset)
        if $b->charset && defined $expected;
    $expected = _subst_ports($t, $expected)
        if defined $expected && !ref $expected;
    return $expected;
}

# The body squeezed onto one line, as upstream puts it in like-test names.
sub _summary {
    my ($s) = @_;
    return '' unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\s+/ /g;
    return $s;
}

# Patterns of error_log-style sections: a string (one substring per line),
# a qr// or an array of both from "eval".
sub _patterns {
    my ($spec) = @_;
    return [$spec] if ref $spec eq 'Regexp';
    return [@$spec] if ref $spec eq 'ARRAY';
    chomp $spec;
    return [split /\n+/, $spec];
}

sub _matches {
    my ($line, $pat) = @_;
    return ref $pat ? scalar($line =~ $pat) : index($line, $pat) >= 0;
}

sub _fmt {
    my ($s) = @_;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# Must-match patterns: one test per pattern (pass when some line of the
# new log lines matches it, fail otherwise).
sub _check_present {
    my ($t, $section, $file, $lines) = @_;
    my ($name, $rep) = @$t{qw(name rep)};
    my @pats = grep { defined } @{ _patterns($section) };

    (my $section_name = $file) =~ s/\./_/;    # error.log -> error_log
    for my $pat (@pats) {
        my $found = grep { _matches($_, $pat) } @$lines;
        _one_test $t->{dry_run}, "$name - $section_name", sub {
            if ($found) {
                Test::More::pass("$name - pattern \"$pat\" matches a line "
                                 . "in $file (req $rep)");
            } else {
                Test::More::fail("$name - pattern \"$pat\" should match a "
                                 . "line in $file (req $rep)");
            }
        };
    }
}

# Must-not-match patterns: one passing test per pattern that matches no
# line; a pattern that matches fails once per matching line (upstream
# does the same, so a bad block may emit more tests than planned).
sub _check_absent {
    my ($t, $section, $file, $lines) = @_;
    my ($name, $rep) = @$t{qw(name rep)};
    my @pats = grep { defined } @{ _patterns($section) };
    (my $section_name = $file) =~ s/\./_/;

    for my $pat (@pats) {
        my @hits = grep { _matches($lines->[$_], $pat) } 0 .. $#$lines;
        my $p = _fmt($pat);

        if (!@hits) {
            _one_test $t->{dry_run}, "$name - no_$section_name", sub {
                Test::More::pass("$name - pattern \"$p\" does not match a "
                                 . "line in $file (req $rep)");
            };
        }
        for my $i (@hits) {
            my $ln = _fmt($lines->[$i]);
            _one_test $t->{dry_run}, "$name - no_$section_name", sub {
                Test::More::fail("$name - pattern \"$p\" should not match "
                    . "any line in $file but matches line \"$ln\" (req $rep)");
                my $last = $i + 9 < $#$lines ? $i + 9 : $#$lines;
                Test::More::diag(join '', @$lines[ $i + 1 .. $last ])
                    if $i < $last;
            };
        }
    }
}

# grep_error_log: one test comparing the concatenated matches (one per
# line) with grep_error_log_out.
sub _check_grep {
    my ($t, $lines) = @_;
    my ($b, $name, $rep) = @$t{qw(block name rep)};

    my $pat = $b->grep_error_log;
    if (!defined $pat) {
        $t->{bail}->("$name - No --- grep_error_log defined but "
                     . "--- grep_error_log_out is defined")
            if defined $b->grep_error_log_out;
        return;
    }
    $pat = $pat->[$rep] if ref $pat eq 'ARRAY';
    return unless defined $pat;

    my $expected = $b->grep_error_log_out;
    $t->{bail}->("$name - No --- grep_error_log_out defined but "
                 . "--- grep_error_log is defined") unless defined $expected;
    $expected = $expected->[$rep] if ref $expected eq 'ARRAY';

    _one_test $t->{dry_run}, "$name - error_log", sub {
        my $out = '';
        for my $line (@$lines) {
            my $hit = ref $pat ? ($line =~ /($pat)/ ? $1 : undef)
                               : ($line =~ /(\Q$pat\E)/ ? $1 : undef);
            $out .= "$hit\n" if defined $hit && $hit !~ /\n/;
        }
        is_str($out, $expected, "$name - grep_error_log_out (req $rep)",
               $t->{plain_is});
    };
}

# Error-log checks after a response: grep_error_log, error_log,
# no_error_log; then warnings for [alert]/[crit]/[emerg] lines that no
# section mentions, and a failure for each "Assertion ... failed" line.
sub check_error_log {
    my ($t) = @_;
    my ($b, $name) = @$t{qw(block name)};
    my $lines = $t->{error_log_lines}->();

    _check_grep($t, $lines);
    _check_present($t, scalar $b->error_log, 'error.log', $lines)
        if defined $b->error_log;
    _check_absent($t, scalar $b->no_error_log, 'error.log', $lines)
        if defined $b->no_error_log;

    _warn_unexpected($t, $lines) unless $t->{dry_run};

    for my $line (@$lines) {
        next unless $line =~ /\bAssertion .*?failed\b/;
        chomp(my $l = $line);
        fail_extra("$name - $l\n");
    }
}

sub _warn_unexpected {
    my ($t, $lines) = @_;
    my $b = $t->{block};
    my @mentioned = grep { defined } map { ref $_ eq 'ARRAY' ? @$_ : $_ }
                    $b->error_log, $b->no_error_log;
    my $mentions = sub {
        my ($s) = @_;
        return grep { !ref $_ || ref $_ eq 'Regexp' ? /\Q$s\E/ : 0 }
               @mentioned;
    };

    for my $kind ('writing a global lua variable', '[alert', '[crit',
                  '[emerg') {
        next if $mentions->($kind);
        my $re = $kind =~ /^\[/ ? qr/\Q$kind\E\]/ : qr/\Q$kind\E/;
        warn "WARNING: $t->{name} - " . _fmt($_) . "\n"
            for grep { $_ =~ $re } @$lines;
    }
}

# access_log / no_access_log, with the same counting as the error log.
sub check_access_log {
    my ($t) = @_;
    my $b = $t->{block};
    return unless defined $b->access_log || defined $b->no_access_log;

    my $lines = $t->{access_log_lines}->();
    _check_present($t, scalar $b->access_log, 'access.log', $lines)
        if defined $b->access_log;
    _check_absent($t, scalar $b->no_access_log, 'access.log', $lines)
        if defined $b->no_access_log;
}

# "--- stap" needs SystemTap, which this subset does not drive; upstream
# then reports the block's stap checks as one skipped test.
sub check_stap {
    my ($t) = @_;
    return unless $t->{block}{stap};
    my $why = $t->{dry_run} ? "the lack of directive $t->{dry_run}"
                            : "env TEST_NGINX_USE_STAP is not set";
  SKIP: {
        Test::More::skip("$t->{name} - stap_out - tests skipped due to $why",
                         1);
    }
}

1;
