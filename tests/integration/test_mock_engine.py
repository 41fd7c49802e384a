"""The mock engine: configured time to first token and inter-token latency (and the speedup
factor), its config contract (served_model_name required, model accepted), a tokens-kind mock
staying out of the text frontend, and load events at least every load_interval."""
import json
import subprocess
import time

import pytest

import exitcheck
from serving_util import (SLOW, TURBINE, Stream, Turbine, chat, deployment, free_port, get,
                          http_component, metric_sum, metrics, mock_component, serving, wait_for,
                          wait_models, wait_ready)


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port = free_port()
    with serving(tmp_path_factory.mktemp('mock'), port, [
        http_component(port, router='router'),
        ('router', 'router', 1, {}),
        mock_component('timed', name='timed', ttft='200ms', itl='20ms', output_tokens=10),
        mock_component('timed2x', name='timed2x', ttft='600ms', itl='60ms', output_tokens=10,
                       speedup=2),
        mock_component('instant', name='instant', ttft='5s', itl='1s', output_tokens=30,
                       speedup=0),
        mock_component('ids', name='ids', kind='tokens'),
    ], {'timed', 'timed2x', 'instant'}):
        yield port


def timed_stream(port, model):
    """Returns (time to first text, [gaps between texts], total) of one streamed answer."""
    t0 = time.perf_counter()
    s = Stream(port, {'model': model, 'stream': True,
                      'messages': [{'role': 'user', 'content': 'time me'}]})
    stamps = []
    try:
        for ev in s.events():
            if ev == '[DONE]':
                break
            c = json.loads(ev)
            if c['choices'] and c['choices'][0]['delta'].get('content'):
                stamps.append(time.perf_counter())
    finally:
        s.close()
    return stamps[0] - t0, [b - a for a, b in zip(stamps, stamps[1:])], time.perf_counter() - t0


# Only the lower bounds are the mock's contract (it never answers sooner than configured); how
# little the stack adds on top is a speed, measured by bench/serving/mock_timing.py.  Gaps are
# not counted one by one: on a loaded machine texts that arrive together share one event.

def test_latencies_follow_config(server):
    ttft, gaps, total = timed_stream(server, 'timed')
    assert ttft >= 0.195
    assert total >= 0.37  # 200 ms + 9 x 20 ms: every inter-token wait was kept


def test_speedup(server):
    ttft, gaps, total = timed_stream(server, 'timed2x')
    assert ttft >= 0.295
    assert total >= 0.565  # (600 ms + 9 x 60 ms) / 2
    # and not the 1.14 s speedup 1 would take at the least (how little the stack adds on top is
    # a speed: bench/serving/mock_timing.py)
    assert total < 1.14
    ttft, gaps, total = timed_stream(server, 'instant')
    # speedup 0 waits for nothing: 5 s + 29 s configured; 1/10 of that is ample headroom
    assert total < 3.4 * SLOW


def test_tokens_kind_is_not_a_text_model(server):
    ids = [m['id'] for m in get(server, '/v1/models').json()['data']]
    assert 'ids' not in ids
    h = get(server, '/health').json()
    assert any(r['endpoint'] == 'test.ids.generate' and r['kind'] == 'tokens'
               for r in h['routes'])
    assert all(i['model'] != 'ids' for i in h['instances'])


def test_load_events_at_least_every_interval(tmp_path):
    """An idle mock publishes its load at least every load_interval: ten events at 100 ms reach
    the router within three times the second they need (and the wait really waits)."""
    port = free_port()
    yaml = deployment(port, [http_component(port, router='router'), ('router', 'router', 1, {}),
                             mock_component('beat', name='beat', load_interval='100ms')])
    with Turbine(tmp_path, yaml):
        wait_ready(port)
        wait_models(port, {'beat'})

        def events():
            return metric_sum(metrics(port), 'turbine_router_load_events_total')
        before = events()
        wait_for(lambda: events() >= before + 10, 3 * 10 * 0.1, 'ten load events')
        assert metric_sum(metrics(port), 'turbine_mock_num_requests_running') == 0


def check(tmp_path, text):
    p = tmp_path / 'c.yaml'
    p.write_text(text)
    r = subprocess.run([TURBINE, 'check', str(p)], capture_output=True, text=True,
                       timeout=30 * SLOW)
    exitcheck.check_exit(r.returncode, r.stdout + r.stderr, None, 'turbine check')
    return r


def test_config_contract(tmp_path):
    r = check(tmp_path, 'components:\n  - name: e\n    plugin: mock\n    config:\n'
                        '      ttft: 1s\n')
    assert r.returncode == 2
    assert 'served_model_name' in r.stdout + r.stderr
    folder = tmp_path / 'weights'
    folder.mkdir()
    r = check(tmp_path, 'components:\n  - name: e\n    plugin: mock\n    config:\n'
                        '      served_model_name: llama\n      model: %s\n' % folder)
    assert r.returncode == 0, r.stdout + r.stderr
    r = check(tmp_path, 'components:\n  - name: e\n    plugin: mock\n    config:\n'
                        '      served_model_name: llama\n      kind: words\n')
    assert r.returncode == 2 and 'kind' in r.stdout + r.stderr


def test_direct_answers_as_the_queued_mock_does(tmp_path):
    """`direct: true` (speedup 0 only): a caller in the process computes the answer on its own
    thread (a direct endpoint), and a client cannot tell: unary, streamed and refused requests
    get what the same mock answering from its own thread gives, and the mock still counts
    them.  With a speedup the key is refused at start."""
    port = free_port()
    yaml = deployment(port, [
        http_component(port, router='router'), ('router', 'router', 1, {}),
        mock_component('queued', name='queued', speedup=0, output_tokens=12),
        mock_component('direct', name='direct', speedup=0, output_tokens=12, direct=True,
                       load_interval='100ms'),
    ])
    with Turbine(tmp_path, yaml):
        wait_ready(port)
        wait_models(port, {'queued', 'direct'})
        for params in ({}, {'seed': 7}, {'max_tokens': 5}):
            a = chat(port, 'tell me', model='queued', **params)
            b = chat(port, 'tell me', model='direct', **params)
            assert a.status == b.status == 200, (a.body, b.body)
            ca, cb = a.json()['choices'][0], b.json()['choices'][0]
            assert cb['message']['content'] == ca['message']['content'] != ''
            assert cb['finish_reason'] == ca['finish_reason']
            assert b.json()['usage'] == a.json()['usage']
        assert chat(port, 'tell me', model='direct', max_tokens=5).json()['choices'][0][
            'finish_reason'] == 'length'

        def streamed(model):
            s = Stream(port, {'model': model, 'stream': True, 'seed': 3,
                              'messages': [{'role': 'user', 'content': 'stream me'}]})
            text = ''
            try:
                for ev in s.events():
                    if ev == '[DONE]':
                        break
                    c = json.loads(ev)
                    if c['choices']:
                        text += c['choices'][0]['delta'].get('content') or ''
            finally:
                s.close()
            return text
        assert streamed('direct') == streamed('queued') != ''
        ra = chat(port, 'x', model='queued', response_format={'type': 'json_object'})
        rb = chat(port, 'x', model='direct', response_format={'type': 'json_object'})
        assert rb.status == ra.status >= 400
        assert rb.json()['error']['message'] == ra.json()['error']['message']
        wait_for(lambda: metric_sum(metrics(port), 'turbine_mock_requests_total',
                                    model='direct') >= 5, 5 * SLOW, 'the direct mock counted')
    bad = deployment(port, [mock_component('m', speedup=1, direct=True)])
    t = Turbine(tmp_path, bad, name='bad')
    assert t.wait_exit(20) != 0
    assert 'direct needs speedup: 0' in t.log()
