# Self-test of the bundled Test::Nginx::Socket with the echo module, which
# Debian ships as a dynamic module: run with
#   TEST_NGINX_LOAD_MODULES=/usr/lib/nginx/modules/ngx_http_echo_module.so
use Test::Nginx::Socket;

if (($ENV{TEST_NGINX_LOAD_MODULES} // '') !~ /echo/) {
    plan skip_all => 'needs the echo module in TEST_NGINX_LOAD_MODULES';
}

repeat_each(2);

# Tests per block and round:
#   T1 3  T2 2  T3 2  T4 1  T5 3  T6 2  T7 3
plan tests => repeat_each() * (3 + 2 + 2 + 1 + 3 + 2 + 3);

run_tests();

__DATA__

=== TEST 1: chunked response is decoded
--- config
    location = /t {
        echo hello;
        echo world;
    }
--- request
GET /t
--- response_headers
Transfer-Encoding: chunked
--- response_body
hello
world



=== TEST 2: POST body reaches nginx (trimmed, with Content-Length)
--- config
    location = /t {
        echo_read_request_body;
        echo_request_body;
    }
--- request
POST /t
hello world
--- response_body chomp
hello world



=== TEST 3: chunked request body is sent verbatim
--- config
    location = /t {
        echo_read_request_body;
        echo_request_body;
    }
--- more_headers
Transfer-Encoding: chunked
--- request eval
"POST /t
5\r
hello\r
0\r
\r
"
--- response_body chomp
hello



=== TEST 4: timeout + abort: the client gives up, which is not a failure
--- config
    location = /t {
        echo_sleep 3;
        echo done;
    }
--- request
GET /t
--- timeout: 300ms
--- abort
--- ignore_response
--- no_error_log
[alert]



=== TEST 5: wait, then check the error log
--- config
    location = /t {
        echo_flush;
        echo_sleep 0.1;
        echo done;
    }
--- request
GET /t
--- wait: 0.2
--- response_body
done
--- error_log
http finalize request



=== TEST 6: one request sent as two packets with a delay in between
--- config
    location = /t {
        echo_read_request_body;
        echo_request_body;
    }
--- request eval
[["POST /t\nhel", {value => "lo", delay_before => 0.2}]]
--- response_body chomp
hello



=== TEST 7: response_body_like over a chunked body
--- config
    location = /t {
        echo "a";
        echo_flush;
        echo "b";
    }
--- request
GET /t
--- response_body_like: ^a\nb\n$
--- no_error_log
[error]
