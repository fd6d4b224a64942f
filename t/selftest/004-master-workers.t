# Self-test of the bundled Test::Nginx::Socket: master_on() with workers(2).
use Test::Nginx::Socket;

master_on();
workers(2);
repeat_each(2);

sub children_of {
    my ($ppid) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $in, '<', $stat or next;    # the process may be gone
        my ($pid, $parent) = (<$in> // '') =~ /^(\d+) \(.*\) \S+ (\d+)/;
        push @kids, $pid if defined $parent && $parent == $ppid;
    }
    return @kids;
}

# One extra test per response: the number of worker processes, checked
# with add_response_body_check.
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    my $pid_file = server_root() . '/logs/nginx.pid';
    open my $in, '<', $pid_file or die "cannot open $pid_file: $!";
    my ($master) = <$in> =~ /(\d+)/;
    is(scalar(children_of($master)), 2,
       $block->name . " - master $master has two worker processes");
});

# Per round: T1 status + body + body check + grep_error_log = 4;
#            T2 3 requests x (status + body + body check) = 9.
plan tests => repeat_each() * (4 + 9);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a master with two workers; the master logs their start
--- config
    location = /t {
        return 200 "worker $pid\n";
    }
--- request
GET /t
--- response_body_like: ^worker \d+$
--- grep_error_log eval: qr/start worker process \d+/
--- grep_error_log_out eval
[qr/\A(?:start worker process \d+\n){2}\z/, ""]



=== TEST 2: several connections are served
--- config
    location = /t {
        return 200 "worker $pid\n";
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- response_body_like eval
[qr/^worker \d+$/, qr/^worker \d+$/, qr/^worker \d+$/]
