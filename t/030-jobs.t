# async_job on single requests: the 202 and its shape, wait= and Prefer
# answering with the result itself, and the status location's answers to
# bad input. The job's URI is an echo location (echo_sleep, echo).
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a job is accepted: 202, Location, Retry-After, JSON body
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /submit { async_job jobs /work; }
    location /work { internal; echo_sleep 1; echo "done"; }
    location /jobs/ { async_job_status jobs; }
--- request
POST /submit
hello
--- error_code: 202
--- response_headers_like
Location: ^/jobs/[A-Za-z0-9_-]{22}$
Retry-After: ^1$
Content-Type: ^application/json$
--- response_body_like
^\{"id":"([A-Za-z0-9_-]{22})","status":"queued","href":"/jobs/\1"\}$
--- no_error_log
[error]



=== TEST 2: wait= answers with the result itself when the job ends in time
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /submit { async_job jobs /work wait=5s; }
    location /work {
        internal;
        default_type text/x-job;
        echo_sleep 0.2;
        echo_read_request_body;
        echo "$request_method $args [$request_body]";
    }
    location /jobs/ { async_job_status jobs; }
--- request
PUT /submit?x=1
payload
--- response_headers
Content-Type: text/x-job
--- response_body
PUT x=1 [payload]
--- no_error_log
[error]



=== TEST 3: wait= gives the 202 when the job outlasts it
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /submit { async_job jobs /work wait=1s; }
    location /work { internal; echo_sleep 3; echo "late"; }
    location /jobs/ { async_job_status jobs; }
--- request
POST /submit
--- error_code: 202
--- response_body_like chomp
"status":"running"
--- no_error_log
[error]



=== TEST 4: a client's Prefer: wait=N is honoured
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /submit { async_job jobs /work; }
    location /work { internal; echo_sleep 0.2; echo "direct"; }
    location /jobs/ { async_job_status jobs; }
--- request
POST /submit
--- more_headers
Prefer: respond-async, wait=5
--- response_body
direct
--- no_error_log
[error]



=== TEST 5: Prefer: respond-async alone answers 202 at once, with Preference-Applied
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /submit { async_job jobs /work wait=10s; }
    location /work { internal; echo_sleep 0.5; echo "x"; }
    location /jobs/ { async_job_status jobs; }
--- request
POST /submit
--- more_headers
Prefer: respond-async
--- error_code: 202
--- response_headers
Preference-Applied: respond-async
--- no_error_log
[error]



=== TEST 6: async_job_max_wait caps a client's wait
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    async_job_max_wait 1s;
    location /submit { async_job jobs /work; }
    location /work { internal; echo_sleep 3; echo "x"; }
    location /jobs/ { async_job_status jobs; }
--- request
POST /submit
--- more_headers
Prefer: wait=100
--- error_code: 202
--- no_error_log
[error]



=== TEST 7: an unknown id is 404 with the small JSON body
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
GET /jobs/AAAAAAAAAAAAAAAAAAAAAA
--- error_code: 404
--- response_body
{"error":"job not found"}
--- no_error_log
[error]



=== TEST 8: an id of the wrong length is the same 404
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
GET /jobs/AAAAAAAAAAAAAAAAAAAAAAA
--- error_code: 404
--- response_body
{"error":"job not found"}
--- no_error_log
[error]



=== TEST 9: an id outside the base64url alphabet is the same 404
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
GET /jobs/AAAAAAAAAAAAAAAAAAAA%2B%2F
--- error_code: 404
--- response_body
{"error":"job not found"}
--- no_error_log
[error]



=== TEST 10: an id with non-zero trailing bits is not an id
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
GET /jobs/AAAAAAAAAAAAAAAAAAAAAB
--- error_code: 404
--- response_body
{"error":"job not found"}
--- no_error_log
[error]



=== TEST 11: path traversal and extra segments are 404
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
GET /jobs/AAAAAAAAAAAAAAAAAAAAAA/../../jobs/AAAAAAAAAAAAAAAAAAAAAA/x/result
--- error_code: 404
--- response_body
{"error":"job not found"}
--- no_error_log
[error]



=== TEST 12: the bare prefix is 404
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
GET /jobs/
--- error_code: 404
--- response_body
{"error":"job not found"}
--- no_error_log
[error]



=== TEST 13: an unknown method on the status location is 405 with Allow
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
POST /jobs/AAAAAAAAAAAAAAAAAAAAAA
--- error_code: 405
--- response_headers
Allow: GET, HEAD, DELETE
--- no_error_log
[error]



=== TEST 14: a non-numeric wait is 400
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
GET /jobs/AAAAAAAAAAAAAAAAAAAAAA?wait=soon
--- error_code: 400
--- response_body
{"error":"wait must be whole seconds"}
--- no_error_log
[error]



=== TEST 15: a huge wait is 400
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
GET /jobs/AAAAAAAAAAAAAAAAAAAAAA?wait=99999999999999999999999
--- error_code: 400
--- no_error_log
[error]



=== TEST 16: a negative wait is 400
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
GET /jobs/AAAAAAAAAAAAAAAAAAAAAA?wait=-1
--- error_code: 400
--- no_error_log
[error]



=== TEST 17: DELETE of an unknown job is 404
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /jobs/ { async_job_status jobs; }
--- request
DELETE /jobs/AAAAAAAAAAAAAAAAAAAAAA
--- error_code: 404
--- no_error_log
[error]



=== TEST 18: $async_job_id and $async_job_status on the submit
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /submit {
        async_job jobs /work;
        add_header X-Job $async_job_id always;
        add_header X-Job-Status $async_job_status always;
    }
    location /work { internal; echo_sleep 1; echo "x"; }
    location /jobs/ { async_job_status jobs; }
--- request
POST /submit
--- error_code: 202
--- response_headers_like
X-Job: ^[A-Za-z0-9_-]{22}$
X-Job-Status: ^queued$
--- no_error_log
[error]



=== TEST 19: the job's subrequest sees $async_job_id
--- http_config
    async_job_zone zone=jobs:1m;
--- config
    location /submit { async_job jobs /work wait=5s; add_header X-Job $async_job_id; }
    location /work { internal; echo "id=$async_job_id"; }
    location /jobs/ { async_job_status jobs; }
--- request
POST /submit
--- response_body_like
^id=[A-Za-z0-9_-]{22}$
--- no_error_log
[error]



=== TEST 20: a response over max_result fails the job (result_too_large), never truncated
--- http_config
    async_job_zone zone=jobs:1m max_result=100;
--- config
    location /submit { async_job jobs /work wait=5s; }
    location /work {
        internal;
        echo "0123456789012345678901234567890123456789012345678901234567890123456789";
        echo "0123456789012345678901234567890123456789012345678901234567890123456789";
    }
    location /jobs/ { async_job_status jobs; }
--- request
POST /submit
--- error_code: 202
--- response_body_like chomp
"status":"failed"
--- no_error_log
[error]
