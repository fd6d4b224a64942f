# The module loads into the stock nginx and answers.
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: async_status answers with the module and nginx versions
--- config
    location = /status {
        async_status;
    }
--- request
GET /status
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"module":"ngx_http_async_module","version":"\d+\.\d+\.\d+","nginx_version":"1\.\d+\.\d+","queue_zones":\{\},"job_zones":\{\},"fanout":\{"started":0,"completed":0,"partial":0,"failed":0,"timed_out_calls":0,"cancelled_calls":0,"hedged_calls":0,"hedge_wins":0\}\}$
--- no_error_log
[error]



=== TEST 2: async_status refuses other methods
--- config
    location = /status {
        async_status;
    }
--- request
POST /status
hello
--- error_code: 405
--- no_error_log
[error]



=== TEST 3: HEAD gets the headers only
--- config
    location = /status {
        async_status;
    }
--- request
HEAD /status
--- response_headers
Content-Type: application/json
--- response_body
--- no_error_log
[error]
