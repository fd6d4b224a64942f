# Self-test of the bundled Test::Nginx::Socket: skip_nginx, skip_eval,
# todo, SKIP and must_die.  Upstream counts them the same way: a skip or
# todo section stands for exactly its number of tests.
#
# TEST 5 and 6 make nginx fail on purpose: its "[emerg] unknown directive"
# message on stderr, and the runner's WARNING about the [emerg] line in
# error.log for TEST 5 (whose sections do not mention [emerg]), are
# expected.
use Test::Nginx::Socket;

repeat_each(2);

# Per round: T1 3 (skipped)  T2 3  T3 2 (todo)  T4 2 (skipped)
#            T5 1  T6 1 + 1 error_log pattern; "--- SKIP" blocks are not
#            in blocks() at all.
plan tests => repeat_each() * (3 + 3 + 2 + 2 + 1 + 2);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: skip_nginx that applies (every nginx is newer than 0.0.1)
--- skip_nginx: 3: > 0.0.1
--- config
    location = /t { return 200 "x\n"; }
--- request
GET /t
--- response_body
never compared
--- no_error_log
[error]



=== TEST 2: skip_nginx that does not apply
--- skip_nginx: 3: < 0.0.1
--- config
    location = /t { return 200 "x\n"; }
--- request
GET /t
--- response_body
x
--- no_error_log
[error]



=== TEST 3: todo
--- todo: 2: demonstrates todo
--- config
    location = /t { return 200 "x\n"; }
--- request
GET /t
--- response_body
never compared



=== TEST 4: skip_eval
--- skip_eval: 2: 1 + 1 == 2
--- config
    location = /t { return 200 "x\n"; }
--- request
GET /t
--- response_body
never compared



=== TEST 5: must_die without a value: any failure status
--- config
    this_is_not_a_directive;
--- must_die



=== TEST 6: must_die with the expected exit code, and the reason logged
--- config
    this_is_not_a_directive;
--- must_die: 1
--- error_log eval
qr/\[emerg\] .*unknown directive "this_is_not_a_directive"/



=== TEST 7: a SKIP block is not run and not counted
--- SKIP
--- config
    this_is_not_a_directive;
--- request
GET /t
