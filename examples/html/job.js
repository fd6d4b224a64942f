// The 202 + status URL pattern from a browser: submit, long-poll
// GET <status>/<id>?wait=1 until the job is final, then fetch the result.
// The backend reports its progress (PUT <status>/<id>/progress); the status
// answer carries it, and the bar shows it. A long-poll is not woken by a
// report, so a short wait keeps the bar fresh.
'use strict';

const expectedSeconds = 4; // the demo report's duration, for the bar
const $ = (id) => document.getElementById(id);

let job = null; // {href, id, started, deadline, timer, polls, stopped}

function show(section) {
    for (const id of ['form', 'wait', 'result', 'error']) {
        $(id).hidden = id !== section;
    }
}

function fail(title, text) {
    stop();
    $('error-title').textContent = title;
    $('error-text').textContent = text;
    show('error');
}

function stop() {
    if (job) {
        job.stopped = true;
        clearInterval(job.timer);
    }
}

function tick() {
    const s = (performance.now() - job.started) / 1000;
    $('elapsed').textContent = s.toFixed(1);
    // until the backend reports, the bar approaches 95% over the expected
    // time; the answer fills it
    if (!job.reported) {
        const pct = Math.min(95, (s / expectedSeconds) * 95);
        $('progress').style.width = pct.toFixed(1) + '%';
    }
    if (performance.now() > job.deadline) {
        const j = job;
        fail('Timed out',
             'The job did not finish within ' + j.limit + ' s, so this ' +
             'page gave up and cancelled it.');
        if (j.href) {
            fetch(j.href, {method: 'DELETE'}).catch(() => {});
        }
    }
}

async function submit() {
    stop();
    const limit = Number($('limit').value);
    job = {started: performance.now(), limit: limit, polls: 0,
           deadline: performance.now() + limit * 1000, stopped: false};
    $('job-id').textContent = '—';
    $('state').textContent = 'submitted';
    $('polls').textContent = '0 status polls';
    $('progress').style.width = '0';
    $('progress-text').textContent = '';
    show('wait');
    job.timer = setInterval(tick, 100);

    let res;
    try {
        res = await fetch($('kind').value, {
            method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({quarter: 'Q3'}),
        });
    } catch (e) {
        return fail('Cannot reach the server', String(e));
    }
    if (res.status !== 202) {
        const retry = res.headers.get('Retry-After');
        return fail('Not accepted',
                    'The server answered ' + res.status +
                    (retry ? '; try again in ' + retry + ' s.' : '.'));
    }
    const accepted = await res.json();
    job.href = res.headers.get('Location') || accepted.href;
    job.id = accepted.id;
    $('job-id').textContent = accepted.id;
    $('state').textContent = accepted.status;
    poll(job);
}

async function poll(j) {
    while (!j.stopped) {
        let res, doc;
        try {
            res = await fetch(j.href + '?wait=1', {cache: 'no-store'});
            doc = await res.json();
        } catch (e) {
            return fail('Lost the server', String(e));
        }
        if (j.stopped) {
            return;
        }
        j.polls++;
        $('polls').textContent = j.polls + ' status poll' +
                                 (j.polls === 1 ? '' : 's');
        if (res.status === 404) {
            return fail('Job not found',
                        'The job ' + j.id + ' is unknown or expired.');
        }
        $('state').textContent = doc.status;
        if (doc.progress) {
            showProgress(j, doc.progress);
        }
        if (doc.status === 'queued' || doc.status === 'running') {
            continue; // not final yet: ask again
        }
        if (doc.status === 'completed') {
            if (doc.result_status >= 200 && doc.result_status < 300) {
                return showResult(j, doc);
            }
            return fail('The job failed',
                        'The report backend answered ' + doc.result_status +
                        ' for job ' + j.id + '. Try again later.');
        }
        if (doc.status === 'cancelled') {
            return fail('Cancelled', 'The job ' + j.id + ' was cancelled.');
        }
        return fail('The job failed',
                    'The job ' + j.id + ' failed' +
                    (doc.reason ? ' (' + doc.reason + ')' : '') +
                    '. Nothing was stored; submit it again later.');
    }
}

// What the backend reported: {percent, message}.
function showProgress(j, p) {
    j.reported = true;
    $('progress').style.width = p.percent + '%';
    $('progress-text').textContent =
        p.percent + '%' + (p.message ? ' — ' + p.message : '');
}

async function showResult(j, doc) {
    let text;
    try {
        const res = await fetch(doc.href_result, {cache: 'no-store'});
        text = await res.text();
        try {
            text = JSON.stringify(JSON.parse(text), null, 2);
        } catch (e) {
            // not JSON: shown as it is
        }
    } catch (e) {
        return fail('Lost the server', String(e));
    }
    stop();
    $('progress').style.width = '100%';
    $('took').textContent =
        ((performance.now() - j.started) / 1000).toFixed(1);
    $('result-body').textContent = text;
    show('result');
}

$('submit').addEventListener('click', submit);
$('cancel').addEventListener('click', async () => {
    const j = job;
    stop();
    if (j && j.href) {
        await fetch(j.href, {method: 'DELETE'}).catch(() => {});
    }
    fail('Cancelled', 'You cancelled the job' + (j && j.id ? ' ' + j.id : '') +
         '.');
});
for (const b of document.querySelectorAll('.again')) {
    b.addEventListener('click', () => show('form'));
}
