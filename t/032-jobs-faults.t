# Jobs survive what happens to workers: a worker killed with SIGKILL fails
# its own jobs with reason worker_lost (never stuck in running) and leaves
# the others alone; a reload keeps finished jobs and lets running ones end.
# The backend is a second server of the same nginx on port $PORT+1.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use AsyncNginx;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $backend = $port + 1;

sub jobs_http {
    my ($sleep) = @_;
    return <<"EOF";
    async_job_zone zone=jobs:1m active=8 length=20;
    server {
        listen 127.0.0.1:$backend;
        location /work { echo_sleep \$arg_s; echo "slept \$arg_s"; }
    }
    server {
        listen 127.0.0.1:\$PORT reuseport;
        location /submit {
            async_job jobs /internal/work;
            add_header X-Pid \$pid always;
        }
        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:$backend/;
        }
        location /jobs/ { async_job_status jobs; }
    }
EOF
}

sub job {
    my ($ng, $secs) = @_;
    my $r = $ng->request('POST', "/submit?s=$secs");
    my $j = eval { decode_json($r->{body}) } // {};
    return { id => $j->{id}, pid => $r->{headers}{'x-pid'} };
}

sub state_of {
    my ($ng, $id) = @_;
    my $r = $ng->get("/jobs/$id");
    return eval { decode_json($r->{body}) } // { status => "http $r->{status}" };
}

# Waits (bounded) until every job is in $state; returns how many are.
sub wait_state {
    my ($ng, $state, $timeout, @jobs) = @_;
    my $n = 0;
    AsyncNginx::wait_until(sub {
        $n = grep { state_of($ng, $_->{id})->{status} eq $state } @jobs;
        $n == @jobs;
    }, $timeout);
    return $n;
}

subtest 'SIGKILL of a worker running jobs: worker_lost, the others go on' => sub {
    my $ng = AsyncNginx->new(name => 'jobs-faults', workers => 2,
        http => jobs_http());
    $ng->start;
    my @workers = $ng->worker_pids;
    is(scalar @workers, 2, 'two workers');

    my @jobs;
    my $deadline = time + 10;
    # jobs land on both workers (reuseport spreads the connections)
    while (time < $deadline) {
        push @jobs, job($ng, 3);
        my %by = map { ($_->{pid} // 0) => 1 } @jobs;
        last if @jobs >= 4 && keys %by == 2;
    }
    my %pids = map { ($_->{pid} // 0) => 1 } @jobs;
    is(scalar keys %pids, 2, 'jobs run in both workers') or return;
    is(wait_state($ng, 'running', 5, @jobs), scalar @jobs, 'all running');

    my $victim = $jobs[0]{pid};
    kill 'KILL', $victim;
    my @now;
    my $until = time + 5;
    while (time < $until) {
        @now = $ng->worker_pids;
        last if @now == 2 && !grep { $_ == $victim } @now;
        sleep 0.05;
    }
    is(scalar @now, 2, 'the master respawned the worker');
    ok(!grep({ $_ == $victim } @now), 'a new worker replaced it');

    $deadline = time + 5;
    my @lost = grep { $_->{pid} == $victim } @jobs;
    my @kept = grep { $_->{pid} != $victim } @jobs;
    my @states;
    while (time < $deadline) {
        @states = map { state_of($ng, $_->{id}) } @lost;
        last unless grep { $_->{status} ne 'failed' } @states;
        sleep 0.1;
    }
    is($_->{status}, 'failed', 'a lost job failed') for @states;
    is($_->{reason}, 'worker_lost', 'reason worker_lost') for @states;

    # the survivors' jobs end normally
    $deadline = time + 8;
    my @kept_states;
    while (time < $deadline) {
        @kept_states = map { state_of($ng, $_->{id}) } @kept;
        last unless grep { $_->{status} ne 'completed' } @kept_states;
        sleep 0.2;
    }
    is($_->{status}, 'completed', 'the other worker\'s job completed')
        for @kept_states;

    # slots are whole again: 8 jobs start at once
    my @more = map { job($ng, 3) } 1 .. 8;
    is(wait_state($ng, 'running', 2.5, @more), 8, 'every slot usable again');
    like($ng->error_log, qr/jobs of exited worker processes failed \(worker_lost\)/,
        'the loss is logged');
    $ng->stop;
};

subtest 'reload: finished jobs stay readable, running jobs finish and store' => sub {
    my $ng = AsyncNginx->new(name => 'jobs-faults', workers => 2,
        http => jobs_http());
    $ng->start;
    my $done = job($ng, 0);
    is(wait_state($ng, 'completed', 5, $done), 1, 'one finished');
    my @running = map { job($ng, 3) } 1 .. 3;
    is(wait_state($ng, 'running', 2, @running), 3,
        'three run when the reload comes');

    my @new = $ng->reload;
    ok(@new >= 2, 'new workers run');
    is(state_of($ng, $done->{id})->{status}, 'completed',
        'the finished job is readable after the reload');
    my $r = $ng->get("/jobs/$done->{id}/result");
    is($r->{body}, "slept 0\n", 'and its result');

    my $deadline = time + 10;
    my @states;
    while (time < $deadline) {
        @states = map { state_of($ng, $_->{id}) } @running;
        last unless grep { $_->{status} ne 'completed' } @states;
        sleep 0.2;
    }
    is($_->{status}, 'completed', 'a job of an old worker completed')
        for @states;
    for my $j (@running) {
        is($ng->get("/jobs/$j->{id}/result")->{body}, "slept 3\n",
            'its result was stored');
    }
    my $late = job($ng, 0);
    is(wait_state($ng, 'completed', 5, $late), 1,
        'new jobs run in the new workers');
    unlike($ng->error_log, qr/\[error\]/, 'no [error] line');
    is(scalar($ng->crash_lines), 0, 'no alert or crash')
        or diag join "\n", $ng->crash_lines;
    $ng->stop;
};

done_testing;
