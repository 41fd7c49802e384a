"""The serving path under failure: engines appearing and disappearing (clean exit and SIGKILL of
their process), an instance dying under streams and requests, clients disconnecting (the engine
stops), SIGTERM draining a stream in flight, and a SIGWINCH storm under load."""
import json
import os
import signal
import socket
import threading
import time

import pytest

from serving_util import (SLOW, Stream, Turbine, chat, deployment, free_port, get,
                          http_component, metric_sum, metrics, mock_component, wait_for,
                          wait_live, wait_models, wait_ready)

TTL = 1.0  # lease TTL of the multi-process deployments


def head_yaml(port, reg_port, with_router=True, ttl=TTL):
    extra = ('registry:\n  listen: tcp://127.0.0.1:%d\n  heartbeat_interval: 200ms\n'
             '  lease_ttl: %gs' % (reg_port, ttl))
    comps = [http_component(port, router='router' if with_router else None)]
    if not with_router:
        del comps[0][3]['router']
    if with_router:
        comps.append(('router', 'router', 1, {'policy': 'round_robin'}))
    return deployment(port, comps, extra=extra)


def worker(tmp_path, name, reg_port, model, **cfg):
    yaml = deployment(0, [mock_component(model, name='engine', **cfg)])
    return Turbine(tmp_path, yaml, name=name, join='tcp://127.0.0.1:%d' % reg_port)


def test_models_appear_and_disappear(tmp_path):
    # A lease long enough that "deregistered at once on a clean exit" (measured 0.03 to 0.22 s
    # under load, asan) and "removed when the lease expires" cannot be mistaken for each other
    # even with 3x headroom.
    ttl = 4.0
    port, reg = free_port(), free_port()
    head = Turbine(tmp_path, head_yaml(port, reg, ttl=ttl))
    try:
        wait_live(port)
        r = get(port, '/ready')
        assert r.status == 503 and 'no model' in r.json()['reason']
        assert get(port, '/v1/models').json()['data'] == []
        assert chat(port, model='b').status == 404

        w1 = worker(tmp_path, 'w1', reg, 'b', speedup=0)
        try:
            wait_models(port, {'b'})
            wait_ready(port)
            assert chat(port, model='b').status == 200
        finally:
            w1.stop()  # clean exit: deregisters
        t0 = time.monotonic()
        wait_models(port, set(), timeout=5)
        assert time.monotonic() - t0 < 1.0 * SLOW < ttl
        assert get(port, '/ready').status == 503
        assert chat(port, model='b').status == 404

        w2 = worker(tmp_path, 'w2', reg, 'b', speedup=0)
        wait_models(port, {'b'})
        wait_ready(port)
        w2.kill()  # SIGKILL: only the lease can tell
        t0 = time.monotonic()
        wait_models(port, set(), timeout=4 * ttl)
        # the lease, not the socket, removes it; within 3x what that takes under load
        assert 0.5 * ttl < time.monotonic() - t0 < 3 * (ttl + 0.5)
        assert chat(port, model='b').status == 404
    finally:
        head.stop()


def test_instance_death_during_streams(tmp_path):
    port, reg = free_port(), free_port()
    head = Turbine(tmp_path, head_yaml(port, reg))
    wa = worker(tmp_path, 'wa', reg, 'm', ttft='0s', itl='50ms', output_tokens=50)
    wb = worker(tmp_path, 'wb', reg, 'm', ttft='0s', itl='50ms', output_tokens=50)
    try:
        wait_models(port, {'m'})
        wait_for(lambda: [i['state'] for i in get(port, '/health').json()['instances']]
                 == ['healthy', 'healthy'], 20, 'two healthy instances')
        streams = [Stream(port, {'model': 'm', 'stream': True,
                                 'messages': [{'role': 'user', 'content': 's%d' % i}]},
                          timeout=20) for i in range(4)]
        unary = []
        threads = [threading.Thread(target=lambda: unary.append(chat(port, model='m')))
                   for _ in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        firsts = [next(s.events()) for s in streams]  # every stream started
        assert all(json.loads(f)['choices'][0]['delta']['role'] == 'assistant' for f in firsts)
        wa.kill()
        killed = time.monotonic()
        outcomes = []
        for s in streams:
            evs = list(s.events())
            s.close()
            assert evs[-1] == '[DONE]'  # every stream ends, none hangs
            last = json.loads(evs[-2])
            if 'error' in last:
                outcomes.append(('error', last['error']['code'], time.monotonic() - killed))
            else:
                outcomes.append(('ok', last['choices'][0]['finish_reason'], None))
        for t in threads:
            t.join(30)
        errors = [o for o in outcomes if o[0] == 'error']
        assert len(errors) == 2, outcomes
        assert all(o[1] == 'upstream_error' for o in errors)
        assert sorted(o[1] for o in outcomes if o[0] == 'ok') == ['stop', 'stop']
        assert sorted(r.status for r in unary) == [200, 502]
        bad = [r for r in unary if r.status == 502][0]
        assert bad.json()['error']['code'] == 'upstream_error'
        # the dead instance is dropped; new requests go to the live one
        wait_for(lambda: len(get(port, '/health').json()['instances']) == 1, TTL + 3,
                 'dead instance dropped')
        for _ in range(4):
            assert chat(port, model='m', max_tokens=2).status == 200
        assert get(port, '/ready').status == 200
    finally:
        wa.kill()
        wb.stop()
        head.stop()


def test_waiting_request_moves_off_a_dead_instance(tmp_path):
    # Requests still waiting for their first token when their instance dies go to the other
    # instance (nothing was sent yet), instead of failing.
    port, reg = free_port(), free_port()
    head = Turbine(tmp_path, head_yaml(port, reg))
    wa = worker(tmp_path, 'wa', reg, 'm', ttft='1500ms', output_tokens=3)
    wb = worker(tmp_path, 'wb', reg, 'm', ttft='1500ms', output_tokens=3)
    try:
        wait_models(port, {'m'})
        wait_for(lambda: [i['state'] for i in get(port, '/health').json()['instances']]
                 == ['healthy', 'healthy'], 20, 'two healthy instances')
        results = []
        threads = [threading.Thread(target=lambda: results.append(chat(port, model='m')))
                   for _ in range(2)]  # round robin: one on each
        for t in threads:
            t.start()
        time.sleep(0.3)
        wa.kill()
        for t in threads:
            t.join(30)
        assert [r.status for r in results] == [200, 200], [r.body for r in results]
        assert all(r.json()['usage']['completion_tokens'] == 3 for r in results)
    finally:
        wa.kill()
        wb.stop()
        head.stop()


@pytest.fixture
def slow_server(tmp_path):
    port = free_port()
    yaml = deployment(port, [
        http_component(port),
        mock_component('slow', ttft='0s', itl='50ms', output_tokens=1000),
        mock_component('late', name='late', ttft='10s'),
    ])
    t = Turbine(tmp_path, yaml)
    wait_ready(port)
    yield t, port
    t.stop()


def test_disconnect_cancels_upstream(slow_server):
    t, port = slow_server
    s = Stream(port, {'model': 'slow', 'stream': True,
                      'messages': [{'role': 'user', 'content': 'long'}]})
    events = s.events()
    for _ in range(3):
        next(events)
    s.close()
    t0 = time.monotonic()
    wait_for(lambda: metric_sum(metrics(port), 'turbine_mock_cancelled_total', model='slow') == 1,
             2, 'the engine to cancel the stream')
    assert time.monotonic() - t0 < 1.0 * SLOW
    ms = metrics(port)
    assert metric_sum(ms, 'dynamo_frontend_disconnected_clients', model='slow') == 1
    assert metric_sum(ms, 'dynamo_frontend_cancelled_requests_total', model='slow',
                      reason='disconnect') == 1
    assert metric_sum(ms, 'dynamo_frontend_requests_total', model='slow', code='499') == 1
    # a unary request waiting on its first token, abandoned
    sock = socket.create_connection(('127.0.0.1', port), timeout=10)
    body = json.dumps({'model': 'late', 'messages': [{'role': 'user', 'content': 'x'}]})
    sock.sendall(('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s'
                  % (len(body), body)).encode())
    wait_for(lambda: metric_sum(metrics(port), 'dynamo_frontend_queued_requests',
                                model='late') == 1, 5, 'the request to be queued')
    sock.close()
    wait_for(lambda: metric_sum(metrics(port), 'turbine_mock_cancelled_total', model='late') == 1,
             2, 'the engine to cancel the waiting request')
    ms = metrics(port)
    assert metric_sum(ms, 'dynamo_frontend_inflight_requests') == 0
    assert metric_sum(ms, 'turbine_mock_num_requests_running') == 0


def test_drain_on_sigterm_finishes_stream(tmp_path):
    port = free_port()
    t = Turbine(tmp_path, deployment(port, [
        http_component(port),
        mock_component('m', ttft='0s', itl='50ms', output_tokens=40),
    ]))
    try:
        wait_ready(port)
        s = Stream(port, {'model': 'm', 'stream': True,
                          'messages': [{'role': 'user', 'content': 'x'}]}, timeout=20)
        events = s.events()
        next(events)
        t.signal(signal.SIGTERM)
        wait_for(lambda: get(port, '/ready', timeout=2).status == 503, 2, '/ready to turn 503')
        r = get(port, '/ready')
        assert r.json()['reason'].startswith('draining')
        r = chat(port, model='m')
        assert r.status == 503
        assert r.header('Connection') == 'close'
        assert r.json()['error']['code'] == 'shutting_down'
        rest = list(events)
        s.close()
        assert rest[-1] == '[DONE]'
        fin = json.loads(rest[-2])
        assert fin['choices'][0]['finish_reason'] == 'stop'
        text = ''.join(json.loads(e)['choices'][0]['delta'].get('content', '')
                       for e in rest[:-1])
        assert len(text.split()) >= 38
        rc = t.wait_exit(10)
        t.stopped = True
        t._log.close()
        t.check_clean(rc)
        assert 'drained' in t.log()
    finally:
        t.stop()


def test_sigwinch_storm_under_load(tmp_path):
    port = free_port()
    t = Turbine(tmp_path, deployment(port, [
        http_component(port, router='router'),
        ('router', 'router', 1, {}),
        mock_component('m', replicas=2, ttft='1ms', itl='1ms', output_tokens=8),
    ]))
    try:
        wait_ready(port)
        stop = time.monotonic() + 3.0
        bad = []
        done = [0]

        def client(i):
            while time.monotonic() < stop:
                try:
                    if i % 2:
                        r = chat(port, model='m')
                        ok = r.status == 200 and r.json()['usage']['completion_tokens'] == 8
                    else:
                        s = Stream(port, {'model': 'm', 'stream': True,
                                          'messages': [{'role': 'user', 'content': 'w'}]})
                        evs = list(s.events())
                        s.close()
                        ok = s.status == 200 and evs[-1] == '[DONE]' and \
                            json.loads(evs[-2])['choices'][0]['finish_reason'] == 'stop'
                except Exception as e:  # any failure is a failed request
                    ok, r = False, e
                if not ok:
                    bad.append(i)
                done[0] += 1

        clients = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for c in clients:
            c.start()
        sent = 0
        while time.monotonic() < stop:
            os.kill(t.proc.pid, signal.SIGWINCH)
            sent += 1
            time.sleep(0.001)
        for c in clients:
            c.join(30)
        assert sent > 500
        assert done[0] > 50
        assert bad == []
        assert t.alive()
        assert 'Window' not in t.log() and 'SIGWINCH' not in t.log()
    finally:
        t.stop()


def test_grace_period_cuts_streams_cleanly(tmp_path):
    # A stream longer than the grace period: the process still stops on time, the client gets
    # an error event (the engine stops) or a closed connection, never a hang, and nothing leaks.
    port = free_port()
    yaml = deployment(port, [
        http_component(port),
        mock_component('m', ttft='0s', itl='50ms', output_tokens=1000),
    ]).replace('grace_period: 20s', 'grace_period: 500ms')
    t = Turbine(tmp_path, yaml)
    try:
        wait_ready(port)
        streams = [Stream(port, {'model': 'm', 'stream': True,
                                 'messages': [{'role': 'user', 'content': 'g%d' % i}]},
                          timeout=10) for i in range(3)]
        for s in streams:
            next(s.events())
        t0 = time.monotonic()
        t.signal(signal.SIGTERM)
        for s in streams:
            try:
                evs = list(s.events())
                assert evs[-1] == '[DONE]'
                # the engine's TB_EDRAINING reply, or (when the bus sees its route removed
                # first) TB_EGONE
                assert json.loads(evs[-2])['error']['code'] in ('shutting_down',
                                                                'upstream_error')
            except (EOFError, ConnectionError):
                pass  # cut by the frontend stopping: also an end
            s.close()
        rc = t.wait_exit(10)
        assert time.monotonic() - t0 < 5 * SLOW
        t.stopped = True
        t._log.close()
        t.check_clean(rc)
        assert 'grace period' in t.log()
    finally:
        t.stop()
