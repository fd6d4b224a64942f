# Self-test of the bundled Test::Nginx::Socket: user_files, env
# substitution, http_config / main_config, random ports.
use Test::Nginx::Socket;

repeat_each(2);

# Per round: T1 2  T2 3  T3 2  T4 2  T5 3
plan tests => repeat_each() * (2 + 3 + 2 + 2 + 3);

run_tests();

__DATA__

=== TEST 1: user_files are written under servroot/html
--- config
--- user_files
>>> a.txt
hello from a
>>> sub/dir/b.html
<b>hi</b>
--- request
GET /a.txt
--- response_body
hello from a



=== TEST 2: user_files in a subdirectory, served by the default "location /"
--- config
--- user_files
>>> a.txt
hello from a
>>> sub/dir/b.html
<b>hi</b>
--- request
GET /sub/dir/b.html
--- response_headers
Content-Type: text/html
--- response_body
<b>hi</b>



=== TEST 3: $TEST_NGINX_* is expanded inside user_files
--- config
--- user_files
>>> p.txt
port=$TEST_NGINX_SERVER_PORT
--- request
GET /p.txt
--- response_body
port=$ServerPort



=== TEST 4: a second server on $TEST_NGINX_RAND_PORT_1 via http_config
--- main_config
worker_rlimit_nofile 1024;
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "backend on $server_port\n";
        }
    }
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/x;
    }
--- request
GET /t
--- response_body_like: ^backend on \d+$



=== TEST 5: user_files with a modification time
--- config
--- user_files
>>> old.txt 200101020304.05
old
--- request
GET /old.txt
--- response_headers
Last-Modified: Tue, 02 Jan 2001 03:04:05 GMT
--- response_body
old
