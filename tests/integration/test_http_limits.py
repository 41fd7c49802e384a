"""The http frontend's limits and guards: API keys, overload (503 + Retry-After), body and
header size, header and idle timeouts, the request deadline (504), engine overload."""
import json
import socket
import time

import pytest

from serving_util import (SLOW, Stream, Turbine, chat, deployment, free_port, get,
                          http_component, mock_component, post, request, wait_for, wait_ready)

KEY = 'sk-test-123'


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port = free_port()
    yaml = deployment(port, [
        http_component(port, api_keys=[KEY, 'second-key'], max_in_flight=2, retry_after=7,
                       max_body_size='2KiB', max_header_size='8KiB', header_timeout='1s',
                       idle_timeout='2s'),
        # "slow" answers after 1.5 s; "fast" at once; "tiny" has one batch slot and no queue
        mock_component('slow', name='slow', ttft='1500ms', itl='1ms', output_tokens=2),
        mock_component('fast', name='fast', speedup=0),
        mock_component('tiny', name='tiny', ttft='1s', output_tokens=1, max_running=1,
                       max_waiting=0),
    ])
    t = Turbine(tmp_path_factory.mktemp('limits'), yaml)
    try:
        wait_ready(port)
        wait_all_models(port, ['fast', 'slow', 'tiny'])
        yield port
    finally:
        t.stop()


AUTH = {'Authorization': 'Bearer ' + KEY}


def wait_all_models(port, expected):
    """/ready needs one routable model; a test may need every one of the deployment's."""
    def models():
        r = get(port, '/v1/models', headers=AUTH)
        return sorted(m['id'] for m in r.json()['data']) if r.status == 200 else r.status
    wait_for(lambda: models() == sorted(expected), 20, 'models %s' % expected, interval=0.05)


def body(model='fast', **kw):
    b = {'model': model, 'messages': [{'role': 'user', 'content': 'x'}]}
    b.update(kw)
    return b


def test_api_keys(server):
    r = get(server, '/v1/models')
    assert r.status == 401
    assert r.header('WWW-Authenticate') == 'Bearer'
    err = r.json()['error']
    assert err['code'] == 'invalid_api_key' and err['type'] == 'invalid_request_error'
    assert err['param'] is None
    assert get(server, '/v1/models', headers={'Authorization': 'Bearer wrong'}).status == 401
    assert get(server, '/v1/models', headers={'Authorization': 'Basic ' + KEY}).status == 401
    assert post(server, '/v1/chat/completions', body()).status == 401
    assert get(server, '/v1/models', headers=AUTH).status == 200
    assert get(server, '/v1/models/fast',
               headers={'Authorization': 'Bearer second-key'}).status == 200
    assert post(server, '/v1/chat/completions', body(), headers=AUTH).status == 200
    # probes stay open
    assert get(server, '/live').status == 200
    assert get(server, '/ready').status == 200


def test_overload_503_with_retry_after(server):
    # two slow requests fill max_in_flight; the third is refused at once
    import threading
    results = []

    def slow():
        results.append(post(server, '/v1/chat/completions', body('slow'), headers=AUTH,
                            timeout=20).status)
    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.4 * SLOW)
    t0 = time.monotonic()
    r = post(server, '/v1/chat/completions', body(), headers=AUTH)
    assert time.monotonic() - t0 < 1.0 * SLOW
    assert r.status == 503
    assert r.header('Retry-After') == '7'
    assert r.json()['error']['code'] == 'overloaded'
    for t in threads:
        t.join(30)
    assert results == [200, 200]
    assert post(server, '/v1/chat/completions', body(), headers=AUTH).status == 200


def test_engine_overload_is_503(server):
    import threading
    first = []
    t = threading.Thread(target=lambda: first.append(
        post(server, '/v1/chat/completions', body('tiny'), headers=AUTH, timeout=20).status))
    t.start()
    time.sleep(0.3 * SLOW)
    r = post(server, '/v1/chat/completions', body('tiny'), headers=AUTH)
    t.join(30)
    assert first == [200]
    assert r.status == 503
    assert r.header('Retry-After') == '7'
    assert r.json()['error']['code'] == 'overloaded'


def test_body_limit(server):
    r = post(server, '/v1/chat/completions', body(pad='y' * 3000), headers=AUTH)
    assert r.status == 413
    assert r.json()['error']['code'] == 'request_too_large'
    assert post(server, '/v1/chat/completions', body(pad='y' * 1000), headers=AUTH).status == 200


def test_header_limit(server):
    r = get(server, '/live', headers={'X-Big': 'z' * 10000})
    assert r.status in (413, 431)
    assert get(server, '/live').status == 200


def test_header_timeout_closes_silent_connections(server):
    s = socket.create_connection(('127.0.0.1', server), timeout=10 * SLOW)
    try:
        s.sendall(b'GET /live HTTP/1.1\r\n')  # never finishes its headers
        t0 = time.monotonic()
        data = s.recv(4096)
        waited = time.monotonic() - t0
    finally:
        s.close()
    assert data == b'' or b'408' in data
    assert 0.5 < waited < 6 * SLOW  # 1 s configured: 3x headroom over 2 s


def test_idle_timeout_closes_keepalive(server):
    s = socket.create_connection(('127.0.0.1', server), timeout=10 * SLOW)
    try:
        s.sendall(b'GET /live HTTP/1.1\r\nHost: x\r\n\r\n')
        first = s.recv(4096)
        assert b'200' in first.split(b'\r\n')[0]
        t0 = time.monotonic()
        rest = s.recv(4096)
        waited = time.monotonic() - t0
    finally:
        s.close()
    assert rest == b''
    assert 1.0 < waited < 9 * SLOW  # 2 s configured: 3x headroom over 3 s


@pytest.fixture(scope='module')
def deadline_server(tmp_path_factory):
    port = free_port()
    yaml = deployment(port, [
        http_component(port, request_timeout='400ms'),
        mock_component('slow', ttft='3s'),
        mock_component('steady', name='steady', ttft='0s', itl='100ms', output_tokens=50),
    ])
    t = Turbine(tmp_path_factory.mktemp('deadline'), yaml)
    try:
        wait_ready(port)
        wait_all_models(port, ['slow', 'steady'])
        yield port
    finally:
        t.stop()


def test_request_timeout_is_504(deadline_server):
    t0 = time.monotonic()
    r = chat(deadline_server, model='slow')
    assert r.status == 504
    assert r.json()['error']['code'] == 'timeout'
    assert time.monotonic() - t0 < 2.5 * SLOW
    # a stream that outlives the deadline ends with an error event, then [DONE]
    s = Stream(deadline_server, dict(body('steady'), stream=True))
    try:
        assert s.status == 200
        events = list(s.events())
    finally:
        s.close()
    assert events[-1] == '[DONE]'
    assert json.loads(events[-2])['error']['code'] == 'timeout'


def test_api_keys_file(tmp_path):
    """Keys from a file (comments and blank lines skipped) add to api_keys; no key is logged."""
    keys = tmp_path / 'keys.txt'
    keys.write_text('# frontend keys\n\n  sk-file-one  \nsk-file-two\n')
    port = free_port()
    yaml = deployment(port, [http_component(port, api_keys=['${TB_TEST_KEY}'],
                                            api_keys_file=str(keys)),
                             mock_component('fast', name='fast', speedup=0)])
    import os
    os.environ['TB_TEST_KEY'] = 'sk-from-env'
    t = Turbine(tmp_path, yaml)
    try:
        wait_ready(port)
        for key in ('sk-file-one', 'sk-file-two', 'sk-from-env'):
            assert get(port, '/v1/models', headers={'Authorization': 'Bearer ' + key}).status == 200
        assert get(port, '/v1/models', headers={'Authorization': 'Bearer # frontend keys'}
                   ).status == 401
        assert get(port, '/v1/models').status == 401
    finally:
        t.stop()
        del os.environ['TB_TEST_KEY']
    log = t.log()
    assert 'API keys required' in log
    for key in ('sk-file-one', 'sk-file-two', 'sk-from-env'):
        assert key not in log


@pytest.mark.parametrize('text, why', [('', 'holds no key'),
                                       ('# only a comment\n', 'holds no key'),
                                       ('sk-ok\nsk bad key\n', 'line 2')])
def test_api_keys_file_refused(tmp_path, text, why):
    from tbproc import run, write_yaml
    keys = tmp_path / 'keys.txt'
    keys.write_text(text)
    path = write_yaml(deployment(free_port(), [http_component(0, api_keys_file=str(keys))]))
    rc, out = run('serve', path, timeout=30 * SLOW)
    assert rc != 0 and why in out and str(keys) in out, out
    assert 'bad key' not in out and 'sk-ok' not in out
