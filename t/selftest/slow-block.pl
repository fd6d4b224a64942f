# Used by 000-wrong-expectation-fails.t: a block that keeps nginx running
# for a long time (--- wait), so the driver can kill this script and check
# that nginx goes away with it.  Not a .t file on purpose.
use Test::Nginx::Socket;

plan tests => 2;

run_tests();

__DATA__

=== TEST 1: request, then wait a long time
--- config
    location = /t {
        return 200 "hi\n";
    }
--- request
GET /t
--- response_body
hi
--- wait: 30
