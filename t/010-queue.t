# async_queue on single requests and on subrequests. The queue works in the
# PREACCESS phase, so (like limit_req) it does not see `return`, which ends a
# request in the earlier rewrite phase: the tests answer with echo.
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a free slot lets the request pass; variables say PASSED
--- http_config
    async_queue_zone zone=q:1m active=2 length=10 timeout=5s;
--- config
    location /t {
        async_queue q;
        add_header X-Queue-Status $async_queue_status;
        add_header X-Queue-Time $async_queue_time;
        echo "ok";
    }
--- request
GET /t
--- response_headers
X-Queue-Status: PASSED
X-Queue-Time: 0.000
--- response_body
ok
--- no_error_log
[error]



=== TEST 2: without async_queue the variables are empty
--- http_config
    async_queue_zone zone=q:1m active=2;
--- config
    location /t {
        return 200 "[$async_queue_status][$async_queue_time]\n";
    }
--- request
GET /t
--- response_body
[][]
--- no_error_log
[error]



=== TEST 3: async_queue off in a nested location turns the queue off
--- http_config
    async_queue_zone zone=q:1m active=1 length=0;
--- config
    async_queue q;
    location /t {
        async_queue off;
        echo "[$async_queue_status]";
    }
--- request
GET /t
--- response_body
[]
--- no_error_log
[error]



=== TEST 4: an internal redirect keeps the one slot it holds
--- http_config
    async_queue_zone zone=q:1m active=1 length=0;
--- config
    location /t {
        async_queue q;
        rewrite ^ /again last;
    }
    location /again {
        async_queue q;
        echo "$async_queue_status";
    }
--- request
GET /t
--- response_body
PASSED
--- no_error_log
[error]



=== TEST 5: subrequests are bounded too: the second parallel call is rejected
--- http_config
    async_queue_zone zone=sub:1m active=1 length=0;
--- config
    location /t {
        echo_location_async /backend 1;
        echo_location_async /backend 2;
    }
    location /backend {
        async_queue sub;
        async_queue_status 429;
        echo_sleep 0.2;
        echo "call $query_string";
    }
--- request
GET /t
--- response_body_like: ^call 1\n.*429 Too Many Requests
--- no_error_log
[error]



=== TEST 6: subrequests give their slot back when they end, not with the request
--- http_config
    async_queue_zone zone=sub:1m active=1 length=0;
--- config
    location /t {
        echo_location /backend 1;
        echo_location /backend 2;
        echo_location /backend 3;
    }
    location /backend {
        async_queue sub;
        echo "call $query_string";
    }
--- request
GET /t
--- response_body
call 1
call 2
call 3
--- no_error_log
[error]



=== TEST 7: parked subrequests are admitted in order as slots free
--- http_config
    async_queue_zone zone=sub:1m active=1 length=10 timeout=5s;
--- config
    location /t {
        echo_location_async /backend 1;
        echo_location_async /backend 2;
        echo_location_async /backend 3;
    }
    location /backend {
        async_queue sub;
        echo_sleep 0.1;
        echo "call $query_string $async_queue_status";
    }
--- request
GET /t
--- response_body
call 1 PASSED
call 2 QUEUED
call 3 QUEUED
--- no_error_log
[error]



=== TEST 8: the status page shows the zone idle after the requests
--- http_config
    async_queue_zone zone=q:1m active=3 length=7 timeout=2s;
--- config
    location /t {
        async_queue q;
        echo "ok";
    }
    location = /status {
        async_status;
    }
--- pipelined_requests eval
["GET /t", "GET /status"]
--- response_body_like eval
["ok\n", qr/"q":\{"active":0,"max_active":3,"waiting":0,"length":7,"timeout_ms":2000,"passed":1,"queued":0,"rejected":0,"timed_out":0,"cancelled":0,/]
--- no_error_log
[error]
