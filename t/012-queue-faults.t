# The admission queue survives a killed worker and a reload under load.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use AsyncNginx;
use POSIX ();

sub sockets {
    my ($pid) = @_;
    return scalar grep { (readlink($_) // '') =~ /^socket:/ }
        glob "/proc/$pid/fd/*";
}

sub queue_http {
    my ($zone, $sleep) = @_;
    return <<"EOF";
    async_queue_zone $zone;
    log_format queue '\$arg_i \$msec \$pid \$status \$async_queue_status';
    server {
        listen 127.0.0.1:\$PORT reuseport;
        location = /status { async_status; }
        location /slow {
            access_log logs/queue.log queue;
            async_queue q;
            echo_sleep $sleep;
            echo "i=\$arg_i";
        }
    }
EOF
}

subtest 'SIGKILL of a worker holding slots and waiters' => sub {
    my $ng = AsyncNginx->new(name => 'faults', workers => 2,
        http => queue_http('zone=q:1m active=2 length=20 timeout=20s', '1'));
    $ng->start;
    my @workers = $ng->worker_pids;
    is(scalar @workers, 2, 'two workers');

    # fill the slots and the queue from both workers, then kill one worker
    # the victim is the worker with more client connections open, so that
    # it surely holds slots or waiters whichever way the kernel spread them
    my $pid = fork // die;
    if ($pid == 0) {
        # both slots taken and clients waiting, however slow the machine
        AsyncNginx::wait_until(sub {
            my $z = ($ng->status // {})->{queue_zones}{q};
            $z && $z->{active} == 2 && $z->{waiting} >= 2;
        }, 5);
        my ($victim) = sort { sockets($b) <=> sockets($a) } @workers;
        kill 'KILL', $victim;
        POSIX::_exit(0);
    }
    my @res = $ng->parallel([ map { { path => "/slow?i=$_" } } 1 .. 8 ],
        gap => 0.02, timeout => 12);
    waitpid $pid, 0;

    my @ok = grep { $_->{status} == 200 } @res;
    my @lost = grep { $_->{status} == 0 } @res;
    ok(@lost >= 1, 'the killed worker\'s clients lost their connection')
        or diag explain [map { $_->{status} } @res];
    is(@ok + @lost, 8, 'everyone else was served normally');

    my @now = $ng->wait_workers(2, 5);
    is(scalar @now, 2, 'the master respawned the worker');
    my $z = $ng->wait_zone_idle('q', 8);
    is($z->{active}, 0, 'no slot leaked');
    is($z->{waiting}, 0, 'no queue place leaked');

    # the capacity is whole: two concurrent requests both pass at once
    my @again = $ng->parallel([ map { { path => "/slow?i=x$_" } } 1 .. 2 ],
        timeout => 5);
    is(scalar(grep { $_->{status} == 200 && $_->{time} < 1.8 } @again), 2,
        'both slots usable again') or diag explain \@again;
    like($ng->error_log, qr/reclaimed \d+ slots and queue places of exited worker processes/,
        'the reclaim is logged');
    $ng->stop;
};

subtest 'reload under load: nothing lost, new limits apply' => sub {
    my $ng = AsyncNginx->new(name => 'faults', workers => 2,
        http => queue_http('zone=q:1m active=1 length=50 timeout=20s', '0.3'));
    $ng->start;
    my $pid = fork // die;
    if ($pid == 0) {
        # reload while requests hold the slot and wait
        AsyncNginx::wait_until(sub {
            my $z = ($ng->status // {})->{queue_zones}{q};
            $z && $z->{active} == 1 && $z->{waiting} >= 2;
        }, 5);
        $ng->reload(http => queue_http('zone=q:1m active=2 length=40 timeout=20s',
            '0.3'));
        POSIX::_exit(0);
    }
    my @res = $ng->parallel([ map { { path => "/slow?i=$_" } } 1 .. 12 ],
        gap => 0.05, timeout => 15);
    waitpid $pid, 0;
    is(scalar(grep { $_->{status} == 200 } @res), 12,
        'every request was served across the reload')
        or diag explain [map { $_->{status} } @res];

    my $z = $ng->wait_zone_idle('q', 8);
    is($z->{max_active}, 2, 'new active= in force');
    is($z->{length}, 40, 'new length= in force');
    is($z->{passed} + $z->{queued}, 12, 'nothing lost or doubled');
    is($z->{active}, 0, 'no slot held');
    is(scalar($ng->crash_lines), 0, 'no alert or crash')
        or diag join "\n", $ng->crash_lines;
    $ng->stop;
};

done_testing;
