# async_fetch: what a fan-out answers, in each async_aggregate form.
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: json inlines JSON bodies and quotes the rest, in declaration order
--- config
    location = /fan {
        async_fetch obj /obj;
        async_fetch text /text;
        async_fetch file /data.json;
        async_fetch typed /typed;
    }
    location = /obj { default_type application/json; return 200 '{"x": [1, 2]}'; }
    location = /text { return 200 "say \"hi\"\n"; }
    location = /typed { default_type application/problem+json; return 200 '[true]'; }
    location = /data.json { types { application/json json; } }
--- user_files
>>> data.json
{"file": 1}
--- request
GET /fan
--- response_headers
Content-Type: application/json
X-Async-Completed: true
!X-Async-Failed
--- response_body chomp
{"obj":{"x": [1, 2]},"text":"say \"hi\"\n","file":{"file": 1}
,"typed":[true]}
--- no_error_log
[error]



=== TEST 2: a JSON media type with a body that is not JSON becomes a string
--- config
    location = /fan {
        async_fetch broken /broken;
        async_fetch empty /empty;
        async_fetch nocontent /nocontent;
    }
    location = /broken { default_type application/json; return 200 '{"x": '; }
    location = /empty { default_type application/json; return 200 ''; }
    location = /nocontent { return 204; }
--- request
GET /fan
--- response_body chomp
{"broken":"{\"x\": ","empty":"","nocontent":""}
--- no_error_log
[error]



=== TEST 3: invalid UTF-8 and control bytes are escaped into valid JSON
--- config
    location = /fan {
        async_fetch bin /bin.dat;
    }
--- user_files eval
[ [ "bin.dat" => "a\xff\x00\x1f\xc3\xa9" ] ]
--- request
GET /fan
--- response_body eval
qq|{"bin":"a\xef\xbf\xbd\\u0000\\u001f\xc3\xa9"}|
--- no_error_log
[error]



=== TEST 4: a failed optional call is null and named in X-Async-Failed
--- config
    location = /fan {
        async_fetch ok /ok;
        async_fetch missing /nosuch optional;
        async_fetch broken /broken optional;
    }
    location = /ok { return 200 "fine"; }
    location = /broken { return 503; }
--- request
GET /fan
--- error_code: 200
--- response_headers
X-Async-Completed: false
X-Async-Failed: missing=404, broken=503
--- response_body chomp
{"ok":"fine","missing":null,"broken":null}
--- error_log
open()



=== TEST 5: a failed required call answers 502 with a JSON error naming it
--- config
    location = /fan {
        async_fetch ok /ok;
        async_fetch broken /broken;
    }
    location = /ok { return 200 "fine"; }
    location = /broken { return 500; }
--- request
GET /fan
--- error_code: 502
--- response_headers
Content-Type: application/json
X-Async-Completed: false
--- response_body chomp
{"error":"async_fetch failed","call":"broken","reason":"500"}
--- no_error_log
[error]



=== TEST 6: the URI takes variables and a query string
--- config
    location = /fan {
        async_fetch a /echo/$arg_who?greeting=hello&n=1;
    }
    location /echo/ { echo -n "$uri $arg_greeting $arg_n"; }
--- request
GET /fan?who=world
--- response_body chomp
{"a":"/echo/world hello 1"}
--- no_error_log
[error]



=== TEST 7: calls are GET and share the request body
--- config
    location = /fan {
        async_fetch a /body;
        async_fetch b /body;
    }
    location = /body { echo -n "$echo_request_method "; echo_request_body; }
--- request
POST /fan
payload
--- response_body chomp
{"a":"GET payload","b":"GET payload"}
--- no_error_log
[error]



=== TEST 8: a body over async_fetch_max_size fails the call as too_large
--- config
    location = /fan {
        async_fetch_max_size 8;
        async_fetch small /small;
        async_fetch known /known optional;
        async_fetch streamed /streamed optional;
    }
    location = /small { return 200 "12345678"; }
    location = /known { return 200 "123456789"; }
    location = /streamed { echo -n "12345"; echo_flush; echo -n "6789"; }
--- request
GET /fan
--- response_headers
X-Async-Completed: false
X-Async-Failed: known=too_large, streamed=too_large
--- response_body chomp
{"small":"12345678","known":null,"streamed":null}
--- no_error_log
[error]



=== TEST 9: concat: when the outcome is known at the start it is a header
--- config
    location = /fan {
        async_aggregate concat;
        async_fetch slow /slow;
        async_fetch fast /fast;
    }
    location = /fast { return 200 "b"; }
    location = /slow { echo_sleep 0.2; echo -n "a"; }
--- request
GET /fan
--- response_headers
X-Async-Completed: true
!Trailer
--- response_body chomp
ab
--- no_error_log
[error]



=== TEST 10: the variables tell the outcome, for headers and logs
--- config
    location = /fan {
        async_fetch ok /ok;
        async_fetch slow /slow timeout=100ms optional;
        add_header X-Completed $async_completed;
        add_header X-Failed $async_failed;
        add_header X-Time $async_fetch_time;
    }
    location = /ok { return 200 "fine"; }
    location = /slow { echo_sleep 1; echo -n "late"; }
--- request
GET /fan
--- response_headers
X-Completed: false
X-Failed: slow=timeout
--- response_headers_like
X-Time: ^0\.(0[5-9]|[1-8])\d*$
--- response_body chomp
{"ok":"fine","slow":null}
--- no_error_log
[error]



=== TEST 11: no fan-out, no value
--- config
    location = /plain {
        return 200 "[$async_completed][$async_failed][$async_fetch_time]";
    }
--- request
GET /plain
--- response_body chomp
[][][]
--- no_error_log
[error]



=== TEST 12: HEAD gets the headers of the answer
--- config
    location = /fan {
        async_fetch ok /ok;
    }
    location = /ok { return 200 "fine"; }
--- request
HEAD /fan
--- response_headers
X-Async-Completed: true
Content-Length: 13
--- response_body
--- no_error_log
[error]
