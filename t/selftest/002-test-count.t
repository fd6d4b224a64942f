# Test counting: a block with a request, a response_body and a one-line
# no_error_log emits exactly 3 TAP tests per round under upstream
# Test::Nginx::Socket (lib/Test/Nginx/Socket.pm, run_test_helper):
#   1  check_error_code      "... - status code ok"
#   1  check_response_body   "... - response_body - response is expected ..."
#   1  check_error_log       "... - pattern \"[error]\" does not match ..."
# so the plan is repeat_each() * blocks() * 3; prove reports a bad plan if
# the bundled runner emitted any other number.
use Test::Nginx::Socket;

repeat_each(3);

plan tests => repeat_each() * (blocks() * 3);    # = 3 * 2 * 3 = 18

run_tests();

__DATA__

=== TEST 1: plain return
--- config
    location = /t {
        return 200 "one\n";
    }
--- request
GET /t
--- response_body
one
--- no_error_log
[error]



=== TEST 2: no_error_log given as a regex via the eval filter
--- config
    location = /t {
        return 200 "two\n";
    }
--- request
GET /t
--- response_body
two
--- no_error_log eval
qr/\[(?:error|alert|crit|emerg)\]/
