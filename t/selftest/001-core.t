# Self-test of the bundled Test::Nginx::Socket (t/lib/Test/Nginx/Socket.pm)
# using only directives of the stock nginx core.  Written to pass unchanged
# under upstream Test::Nginx as well.
use Test::Nginx::Socket;

repeat_each(2);

# Tests per block and round (see the counting rules in Socket.pm):
#   T1 3  T2 4  T3 3  T4 2  T5 5  T6 2  T7 6  T8 6
#   T9 2  T10 2  T11 3  T12 2  T13 2  T14 2
plan tests => repeat_each() * (3 + 4 + 3 + 2 + 5 + 2 + 6 + 6
                               + 2 + 2 + 3 + 2 + 2 + 2);

run_tests();

__DATA__

=== TEST 1: sanity
--- config
    location = /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
hello
--- no_error_log
[error]



=== TEST 2: response_headers, "!Name" means absent
--- config
    location = /t {
        add_header X-Foo bar;
        return 200 "hello\n";
    }
--- request
GET /t
--- response_headers
X-Foo: bar
!X-Bar
--- response_body
hello



=== TEST 3: more_headers reach nginx; response_headers_like
--- config
    location = /t {
        return 200 "[$http_x_foo] [$http_x_bar]\n";
    }
--- request
GET /t
--- more_headers
X-Foo: hello
# a comment line is ignored
X-Bar: world
--- response_headers_like
Content-Type: text/\w+
--- response_body
[hello] [world]



=== TEST 4: error_code and response_body_like
--- config
    location = /t {
        return 404;
    }
--- request
GET /t
--- error_code: 404
--- response_body_like: 404 Not Found



=== TEST 5: error_log and no_error_log (debug log lines of the request)
--- config
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /t?a=1
--- response_body
ok
--- error_log
http request line: "GET /t?a=1 HTTP/1.1"
--- no_error_log
[error]
[alert]



=== TEST 6: HEAD request (headers only, no body to compare)
--- config
    location = /t {
        return 200 "hello";
    }
--- request
HEAD /t
--- response_headers
Content-Length: 5



=== TEST 7: several requests, one connection each; arrays of expectations
--- config
    location = /a { return 200 "a\n"; }
    location = /b { return 404 "b\n"; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 404]
--- response_body eval
["a\n", "b\n"]
--- no_error_log
[alert]



=== TEST 8: pipelined requests on one connection
--- config
    location = /a { return 200 "a $http_connection\n"; }
    location = /b { return 200 "b $http_connection\n"; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- response_body eval
["a keep-alive\n", "b close\n"]
--- no_error_log
[error]



=== TEST 9: $TEST_NGINX_SERVER_PORT in config, $ServerPort in response_body
--- config
    location = /t {
        return 200 "port $TEST_NGINX_SERVER_PORT $server_port\n";
    }
--- request
GET /t
--- response_body
port $ServerPort $ServerPort



=== TEST 10: request body gets a Content-Length (trimmed body)
--- config
    location = /t {
        return 200 "len=$http_content_length\n";
    }
--- request
POST /t
hello world
--- response_body
len=11



=== TEST 11: raw_response_headers_like / _unlike
--- config
    location = /t {
        return 200 "hi\n";
    }
--- request
GET /t
--- raw_response_headers_like: ^HTTP/1\.1 200 OK\r\n
--- raw_response_headers_unlike: Transfer-Encoding



=== TEST 12: grep_error_log
--- config
    location = /t {
        return 200 "hi\n";
    }
--- request
GET /t
--- grep_error_log eval: qr/http request line: "[^"]+"/
--- grep_error_log_out
http request line: "GET /t HTTP/1.1"



=== TEST 13: access_log
--- config
    location = /t {
        return 200 "hi\n";
    }
--- request
GET /t?from=access-log
--- access_log
"GET /t?from=access-log HTTP/1.1" 200



=== TEST 14: response_body_filters
--- config
    location = /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body_filters
uc
--- response_body
HELLO
