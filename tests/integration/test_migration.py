"""Request migration over tcp with real processes (docs/operations.md, "Request migration"): a
head (http, router, preprocessor, registry) and token mock engines in worker processes.  An
engine SIGKILLed mid-answer costs the client nothing: its streams and requests go on at another
instance and end with exactly the text and usage of an unbroken answer; migration_limit 0 gives
the old error; a request that runs out of instances or of migrations ends in an error within
the lease TTL, never a hang."""
import json
import os
import threading
import time

import pytest

from conftest import SHARED
from serving_util import (SLOW, Stream, Turbine, deployment, free_port, metric_sum, metrics,
                          post, wait_for, wait_models)

TINY = os.path.join(SHARED, 'models', 'tinystories-656k')
MODEL = 'tiny-mock'
TTL = 1.0

pytestmark = pytest.mark.skipif(not os.path.isdir(TINY),
                                reason='skipped: ../shared/models/tinystories-656k is absent')


def head_yaml(port, reg, **pre):
    extra = ('registry:\n  listen: tcp://127.0.0.1:%d\n  heartbeat_interval: 200ms\n'
             '  lease_ttl: %gs' % (reg, TTL))
    pcfg = {'served_model_name': MODEL, 'model': TINY, 'router': 'router'}
    pcfg.update(pre)
    return deployment(port, [('http', 'http', 1, {'port': port, 'router': 'router'}),
                             ('router', 'router', 1, {'policy': 'least_loaded'}),
                             ('pre', 'preprocessor', 1, pcfg)], extra=extra)


def worker(tmp_path, name, reg, output_tokens=30):
    c = {'served_model_name': MODEL, 'kind': 'tokens', 'token_id_min': 3, 'token_id_max': 2047,
         'ttft': '0s', 'itl': '40ms', 'output_tokens': output_tokens}
    return Turbine(tmp_path, deployment(0, [('engine', 'mock', 1, c)]), name=name,
                   join='tcp://127.0.0.1:%d' % reg)


def start(tmp_path, n, output_tokens=30, **pre):
    port, reg = free_port(), free_port()
    head = Turbine(tmp_path, head_yaml(port, reg, **pre))
    workers = [worker(tmp_path, 'w%d' % i, reg, output_tokens) for i in range(n)]
    try:
        wait_models(port, {MODEL}, timeout=30)
        wait_for(lambda: head.log().count("routing model '%s' (tokens)" % MODEL) >= n, 20,
                 '%d engines routed' % n)
    except Exception:
        for w in workers:
            w.kill()
        head.stop(check=False)
        raise
    return head, workers, port


def body(i, **kw):
    b = {'model': MODEL, 'prompt': 'Once upon a time story number %d' % i, 'max_tokens': 30,
         'temperature': 0}
    b.update(kw)
    return b


def reference(port, n):
    """The unbroken answers (text, finish_reason, completion tokens) of prompts 0..n-1."""
    out = []
    for i in range(n):
        r = post(port, '/v1/completions', body(i), timeout=30)
        assert r.status == 200, r.body
        j = r.json()
        out.append((j['choices'][0]['text'], j['choices'][0]['finish_reason'],
                    j['usage']['completion_tokens']))
    return out


def read_stream(s):
    """(text, finish_reason, error) of a completions stream read to its end."""
    text, finish, error = '', None, None
    for ev in s.events():
        if ev == '[DONE]':
            break
        j = json.loads(ev)
        if 'error' in j:
            error = j['error']
            continue
        c = j['choices'][0]
        text += c.get('text') or ''
        finish = c.get('finish_reason') or finish
    s.close()
    return text, finish, error


def open_streams(port, n, **kw):
    streams = [Stream(port, body(i, stream=True, **kw), path='/v1/completions', timeout=30)
               for i in range(n)]
    for s in streams:
        assert s.status == 200
    return streams


def stop_all(head, workers):
    for w in workers:
        if not w.stopped:
            w.stop(check=False)
    head.stop()


def test_killed_engine_streams_complete_at_another(tmp_path):
    head, workers, port = start(tmp_path, 3)
    try:
        n = 6
        ref = reference(port, n)
        streams = open_streams(port, n)
        unary = {}

        def one(i):
            r = post(port, '/v1/completions', body(i), timeout=30)
            unary[i] = r

        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # every answer is under way (30 tokens at 40 ms)
        workers[0].kill()
        killed = time.monotonic()
        got = [read_stream(s) for s in streams]
        for t in threads:
            t.join(30)
        for i, (text, finish, error) in enumerate(got):
            assert error is None, (i, error)
            # the migrated answer is the unbroken one: nothing twice, nothing missing
            assert (text, finish) == ref[i][:2], (i, text, ref[i])
        for i in range(3):
            j = unary[i].json()
            assert unary[i].status == 200, unary[i].body
            assert j['choices'][0]['text'] == ref[i][0]
            assert j['usage']['completion_tokens'] == ref[i][2]  # counted once
            assert j['usage']['prompt_tokens'] == reference_prompt_tokens(port, i)
        # least_loaded put about 3 of the 9 answers on the killed engine
        moved = metric_sum(metrics(port), 'turbine_migrations_total', model=MODEL)
        assert moved >= 1, head.log()[-4000:]
        assert metric_sum(metrics(port), 'turbine_migrations_exhausted_total') == 0
        assert metric_sum(metrics(port), 'turbine_migration_seconds_count') == moved
        assert time.monotonic() - killed < 10 * SLOW
        assert 'moving it to another instance (migration 1 of at most 3)' in head.log()
    finally:
        stop_all(head, workers)


def reference_prompt_tokens(port, i):
    r = post(port, '/v1/completions', body(i, max_tokens=1), timeout=30)
    return r.json()['usage']['prompt_tokens']


def test_migration_limit_0_gives_the_error(tmp_path):
    head, workers, port = start(tmp_path, 2, migration_limit=0)
    try:
        streams = open_streams(port, 4)
        time.sleep(0.3)
        workers[0].kill()
        got = [read_stream(s) for s in streams]
        errors = [g[2] for g in got if g[2]]
        assert len(errors) == 2, got  # least_loaded: two streams were on the killed engine
        assert all(e['code'] == 'upstream_error' for e in errors)
        assert [g[1] for g in got if not g[2]] == ['stop', 'stop']
        assert metric_sum(metrics(port), 'turbine_migrations_total') == 0
    finally:
        stop_all(head, workers)


def test_no_instance_left_is_an_error_not_a_hang(tmp_path):
    head, workers, port = start(tmp_path, 1)
    try:
        s = open_streams(port, 1)[0]
        time.sleep(0.3)
        workers[0].kill()
        killed = time.monotonic()
        text, finish, error = read_stream(s)
        assert error is not None and finish is None, (text, finish)
        # the break is seen within the lease TTL; the error follows at once
        assert time.monotonic() - killed < 3 * (TTL + 0.5) * SLOW
        assert "no engine instance serves model 'tiny-mock'" in error['message'], error
        assert head.alive()
    finally:
        stop_all(head, workers)


def test_exhausted_migrations_end_in_an_error(tmp_path):
    # migration_limit 1 and three engines killed one after the other: the stream breaks, moves
    # once, then breaks again (exhausted) or finds no engine left; either way an error, in time.
    head, workers, port = start(tmp_path, 3, output_tokens=400, migration_limit=1)
    try:
        s = open_streams(port, 1, max_tokens=400)[0]  # 16 s unbroken
        time.sleep(0.3)
        t0 = time.monotonic()
        for w in workers:
            w.kill()
            time.sleep(TTL + 0.3)
        text, finish, error = read_stream(s)
        assert error is not None, (text, finish)
        assert time.monotonic() - t0 < 3 * (TTL + 0.3) + 3 * (TTL + 0.5) * SLOW
        ms = metrics(port)
        assert metric_sum(ms, 'turbine_migrations_total') <= 1
        assert ('already moved 1 times (migration_limit 1)' in error['message']
                or 'no engine instance serves' in error['message']), error
    finally:
        stop_all(head, workers)


def test_cancel_follows_the_migrated_request(tmp_path):
    # The stream starts while only w0 serves, so it is there; w1 joins, w0 is killed, the
    # stream moves to w1; the client then goes away and w1's sequence is cancelled (the mock
    # logs each cancellation at debug).
    head, workers, port = start(tmp_path, 1, output_tokens=400)
    w1 = None
    try:
        s = open_streams(port, 1, max_tokens=400)[0]  # 16 s unbroken
        events = s.events()
        next(events)
        c = {'served_model_name': MODEL, 'kind': 'tokens', 'token_id_min': 3,
             'token_id_max': 2047, 'ttft': '0s', 'itl': '40ms', 'output_tokens': 400}
        yaml = deployment(0, [('engine', 'mock', 1, c)]).replace('level: info', 'level: debug')
        w1 = Turbine(tmp_path, yaml, name='w1', join='tcp://127.0.0.1:%d' % reg_of(head))
        wait_for(lambda: head.log().count("routing model '%s' (tokens)" % MODEL) >= 2, 20,
                 'w1 routed')
        workers[0].kill()
        head.wait_log('moving it to another instance', timeout=3 * TTL + 2)
        wait_for(lambda: metric_sum(metrics(port), 'turbine_migration_seconds_count') >= 1,
                 5, 'the stream resumed on w1')
        s.close()  # the client goes away
        w1.wait_log(r'cancelled \(.*\) after \d+ tokens', timeout=5)
    finally:
        if w1:
            w1.stop(check=False)
        stop_all(head, workers)


def reg_of(head):
    with open(head.yaml_path) as f:
        return int(f.read().split('listen: tcp://127.0.0.1:')[1].split()[0])
