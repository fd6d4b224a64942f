# Deliberately wrong expectations.  Not a .t file, so prove does not pick
# it up: 000-wrong-expectation-fails.t runs it and requires that it FAILS,
# with the failures below showing up as "not ok".  Core directives only.
use Test::Nginx::Socket;

repeat_each(1);

# What the plan would be if everything passed:
#   T1 status + body = 2
#   T2 status + body = 2, plus one extra failure for the timeout; the
#      status and body checks fail too, as nothing arrived in 300ms
#   T3 status + body + no_error_log = 3
#   T4 status + 2 headers = 3
plan tests => 2 + 2 + 3 + 3;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: wrong response body
--- config
    location = /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
goodbye



=== TEST 2: a client timeout without --- abort is a failure
--- config
    location = /t {
        limit_rate 1;
        return 200 "0123456789";
    }
--- request
GET /t
--- timeout: 300ms
--- response_body: 0123456789



=== TEST 3: no_error_log pattern that does occur
--- config
    location = /t {
        return 200 "hi\n";
    }
--- request
GET /t
--- response_body
hi
--- no_error_log
http request line



=== TEST 4: header expectations that do not hold
--- config
    location = /t {
        return 200 "hi\n";
    }
--- request
GET /t
--- response_headers
!Content-Type
X-Missing: yes
