# The demo's job page in a real browser: examples/demo.conf as
# `./build.sh run` fills it in, headless Chromium driven over WebDriver
# (chromedriver). Submit a job, see the wait screen, then the result; a
# failing backend and a page that gives up show clear messages; the wait
# screen's bar follows the progress the report backend sends.
# Screenshots are left in the server root's screenshots/ directory.
use strict;
use warnings;
use utf8;
use lib 't/lib';
use Test::More;
use Cwd qw(abs_path);
use File::Path qw(make_path);
use Time::HiRes qw(time sleep);
use AsyncNginx;
use WebDriver;

plan skip_all => 'needs chromium and chromium-driver (./build.sh installs them)'
    unless WebDriver::chromium() && WebDriver::chromedriver();

my ($module, $echo) = AsyncNginx::modules();
$module = $ENV{ASYNC_MODULE_SO} // $module;
plan skip_all => 'needs TEST_NGINX_LOAD_MODULES (run through ./build.sh test)'
    unless $module && $echo;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $base = "http://127.0.0.1:$port";

# The demo itself, with build.sh's substitutions.
package DemoNginx {
    our @ISA = ('AsyncNginx');
    sub config_text {
        my ($self) = @_;
        open my $fh, '<', 'examples/demo.conf' or die "demo.conf: $!";
        my $text = do { local $/; <$fh> };
        my $examples = Cwd::abs_path('examples');
        $text =~ s/\@LISTEN\@/127.0.0.1:$self->{port}/g;
        $text =~ s/\@MODULE_SO\@/$module/g;
        $text =~ s/\@ECHO_SO\@/$echo/g;
        $text =~ s/\@EXAMPLES\@/$examples/g;
        return $text;
    }
}

my $ng = DemoNginx->new(name => 'browser', workers => 2);
$ng->start;
my $shots = $ng->root . '/screenshots';
make_path($shots);

my $wd = WebDriver->new(port => $port + 7, log => $ng->root . '/logs/chromedriver.log');

subtest 'submit, wait screen, result' => sub {
    $wd->get("$base/app/job.html");
    ok($wd->wait_for(10, sub { $wd->displayed('#submit') }), 'the page loads');
    is($wd->script('return document.title'),
        'Report job — ngx_http_async_module demo', 'title');
    my $t0 = time;
    $wd->click('#submit');

    ok($wd->wait_for(5, sub {
        $wd->displayed('#wait') && ($wd->text('#job-id') // '') =~ /^[\w-]{22}$/
    }), 'the wait screen shows the job id');
    ok($wd->wait_for(5, sub { ($wd->text('#state') // '') =~ /^(queued|running)$/ }),
        'state: ' . ($wd->text('#state') // ''));
    ok($wd->wait_for(3, sub { ($wd->text('#elapsed') // 0) >= 1 }),
        'the elapsed time runs');
    ok(!$wd->displayed('#result'), 'no result yet');
    my $size = $wd->screenshot("$shots/wait.png");
    ok($size > 1000, "wait screen screenshot: $shots/wait.png ($size bytes)");

    # the report backend sends its progress; the bar follows it
    my (%seen, %widths);
    ok($wd->wait_for(20, sub {
        my $text = $wd->text('#progress-text') // '';
        $seen{$1} = $text if $text =~ /^(\d+)%.*[a-z]/;
        my $w = $wd->script(
            'return document.getElementById("progress").style.width');
        $widths{$w} = 1 if ($w // '') =~ /^\d+%$/;
        return $wd->displayed('#result');
    }), 'the result shows');
    my @percents = sort { $a <=> $b } keys %seen;
    ok(@percents >= 2, 'two reported percents seen on the page: '
        . join(', ', map { "$_%" } @percents));
    ok((grep { $_ > 0 && $_ < 100 } @percents) == @percents,
        'between 0 and 100');
    ok(scalar(grep { $widths{"$_%"} } @percents) >= 2,
        'the bar width followed them');
    my $took = time - $t0;
    ok($took >= 3.5 && $took < 15, "after the report's 4 s: ${took}s");
    like($wd->text('#result-body') // '', qr/"report": "quarterly"/,
        'the result body, pretty-printed');
    my $polls = $wd->script(
        'return document.getElementById("polls").textContent');
    like($polls, qr/^[1-9]\d* status polls?$/, "it long-polled: $polls");
    ok(!$wd->displayed('#wait'), 'the wait screen is gone');
    $size = $wd->screenshot("$shots/result.png");
    ok($size > 1000, "result screenshot: $shots/result.png ($size bytes)");
};

subtest 'a failing backend gives a clear message' => sub {
    $wd->click('#result .again');
    $wd->click('#kind option[value="/jobs/broken"]');
    $wd->click('#submit');
    ok($wd->wait_for(15, sub { $wd->displayed('#error') }), 'error shows');
    is($wd->text('#error-title'), 'The job failed', 'title');
    like($wd->text('#error-text') // '', qr/answered 500/, 'names the status');
    $wd->screenshot("$shots/failed.png");
};

subtest 'the page gives up after its time limit' => sub {
    $wd->click('#error .again');
    $wd->click('#kind option[value="/jobs/report"]');
    $wd->click('#limit option[value="2"]');
    $wd->click('#submit');
    ok($wd->wait_for(10, sub { $wd->displayed('#error') }), 'error shows');
    is($wd->text('#error-title'), 'Timed out', 'title');
    like($wd->text('#error-text') // '', qr/within 2 s/, 'says how long');
    $wd->screenshot("$shots/timeout.png");
};

$wd->quit;

my @log = grep { /"(?:POST|GET|DELETE) \/jobs\// } $ng->log_file('access.log');
ok(scalar(grep { /"POST \/jobs\/report / && / 202 / } @log) >= 2,
    'the access log has the submits (202)');
ok(scalar(grep { /"DELETE \/jobs\/status\// } @log) >= 1,
    'the page cancelled the job it gave up on');
my @bad = grep { /\[(?:error|alert|crit|emerg)\]/ } split /\n/, $ng->error_log;
is_deeply(\@bad, [], 'no [error] in the error log');
diag "screenshots in $shots";
$ng->stop;
done_testing;
