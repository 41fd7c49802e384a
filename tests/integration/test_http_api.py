"""The http frontend end to end over one process (http + router + 2 mock replicas at full speed):
every endpoint, the OpenAI shapes, streaming framing, every validation error, metrics, through
curl, raw sockets and the OpenAI Python client."""
import json
import subprocess
import time

import pytest

from serving_util import (SLOW, Stream, chat, free_port, get, http_component, metric_sum, metrics,
                          mock_component, post, request, serving, wait_for)

MODEL = 'mock-model'


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port = free_port()
    with serving(tmp_path_factory.mktemp('api'), port, [
        http_component(port, router='router', max_body_size='64KiB'),
        ('router', 'router', 1, {'policy': 'round_robin'}),
        mock_component(MODEL, replicas=2, speedup=0, output_tokens=12, context_length=512),
        mock_component('other-model', name='engine2', speedup=0),
    ], {MODEL, 'other-model'}):
        yield port


def openai_client(openai, port, api_key='unused'):
    # Our own httpx client: openai 1.54 passes `proxies`, which httpx 0.28 no longer takes.
    import httpx
    return openai.OpenAI(base_url='http://127.0.0.1:%d/v1' % port, api_key=api_key,
                         max_retries=0, http_client=httpx.Client(timeout=20 * SLOW))


def curl(*args):
    p = subprocess.run(['curl', '-sS', '--max-time', str(int(20 * SLOW)), '-w', '\n%{http_code}']
                       + list(args), capture_output=True, text=True, timeout=30 * SLOW)
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition('\n')
    return int(code), body


def error_of(r, status, param=None, code=None):
    assert r.status == status, (r.status, r.body)
    assert r.header('Content-Type') == 'application/json'
    err = r.json()['error']
    assert set(err) == {'message', 'type', 'param', 'code'}
    assert isinstance(err['message'], str) and err['message']
    assert err['param'] == param, err
    if code:
        assert err['code'] == code, err
    return err


# ---- health and models ---------------------------------------------------------------------

def test_live_ready_health(server):
    r = get(server, '/live')
    assert r.status == 200 and r.json() == {'status': 'live'}
    r = get(server, '/ready')
    assert r.status == 200
    assert r.json()['status'] == 'ready'
    h = get(server, '/health').json()
    assert h['status'] == 'ready'
    assert 'test.http' in h['components'] and 'test.engine' in h['components']
    eps = {x['endpoint']: x for x in h['routes']}
    assert eps['test.engine.generate']['instances'] == 2
    assert eps['test.router.route']['kind'] == 'route'
    models = {m['id']: m for m in h['models']}
    assert models[MODEL]['instances'] == 2 and models[MODEL]['healthy'] == 2
    insts = [i for i in h['instances'] if i['model'] == MODEL]
    assert len(insts) == 2 and all(i['state'] == 'healthy' for i in insts)
    assert h['router'] == 'test.router.route'


def test_models(server):
    code, body = curl('http://127.0.0.1:%d/v1/models' % server)
    assert code == 200
    d = json.loads(body)
    assert d['object'] == 'list'
    assert sorted(m['id'] for m in d['data']) == sorted([MODEL, 'other-model'])
    for m in d['data']:
        assert m['object'] == 'model' and isinstance(m['created'], int) and m['owned_by']
    one = get(server, '/v1/models/' + MODEL).json()
    assert one['id'] == MODEL and one['max_model_len'] == 512
    err = error_of(get(server, '/v1/models/nope'), 404, 'model', 'model_not_found')
    assert 'nope' in err['message']


# ---- answers -------------------------------------------------------------------------------

def test_chat_completion_with_curl(server):
    code, body = curl('-H', 'Content-Type: application/json', '-d',
                      json.dumps({'model': MODEL, 'messages': [{'role': 'user', 'content': 'hi'}]}),
                      'http://127.0.0.1:%d/v1/chat/completions' % server)
    assert code == 200
    d = json.loads(body)
    assert d['id'].startswith('chatcmpl-')
    assert d['object'] == 'chat.completion'
    assert isinstance(d['created'], int) and abs(d['created'] - time.time()) < 3600
    assert d['model'] == MODEL
    assert d['system_fingerprint'].startswith('fp_')
    (c,) = d['choices']
    assert c['index'] == 0 and c['message']['role'] == 'assistant'
    assert len(c['message']['content'].split()) == 12
    assert c['finish_reason'] == 'stop' and c['logprobs'] is None
    u = d['usage']
    assert u['completion_tokens'] == 12 and u['prompt_tokens'] > 0
    assert u['total_tokens'] == u['prompt_tokens'] + u['completion_tokens']


def test_deterministic_and_seeded(server):
    a = chat(server, 'same prompt').json()['choices'][0]['message']['content']
    b = chat(server, 'same prompt').json()['choices'][0]['message']['content']
    c = chat(server, 'another prompt').json()['choices'][0]['message']['content']
    s1 = chat(server, 'same prompt', seed=5).json()['choices'][0]['message']['content']
    s2 = chat(server, 'x', seed=5).json()['choices'][0]['message']['content']
    assert a == b and a != c
    assert s1 == s2 and s1 != a


def test_max_tokens_and_stop(server):
    d = chat(server, max_tokens=3).json()
    assert d['choices'][0]['finish_reason'] == 'length'
    assert d['usage']['completion_tokens'] == 3
    assert len(d['choices'][0]['message']['content'].split()) == 3
    full = chat(server, 'stop test').json()['choices'][0]['message']['content']
    word = full.split()[4]
    d = chat(server, 'stop test', stop=[' ' + word]).json()
    assert d['choices'][0]['finish_reason'] == 'stop'
    assert d['choices'][0]['message']['content'] == full[:full.index(' ' + word)]


def test_completions(server):
    r = post(server, '/v1/completions', {'model': MODEL, 'prompt': 'Once upon', 'max_tokens': 4,
                                         'echo': True, 'logprobs': 2})
    assert r.status == 200
    d = r.json()
    assert d['id'].startswith('cmpl-') and d['object'] == 'text_completion'
    (c,) = d['choices']
    assert c['text'].startswith('Once upon') and c['finish_reason'] == 'length'
    lp = c['logprobs']
    assert len(lp['tokens']) == 4 and len(lp['token_logprobs']) == 4
    assert all(len(t) == 2 for t in lp['top_logprobs'])
    assert lp['text_offset'][0] == len('Once upon')
    assert c['text'][len('Once upon'):] == ''.join(lp['tokens'])
    d = post(server, '/v1/completions', {'model': MODEL, 'prompt': [1, 2, 3]}).json()
    assert d['usage']['prompt_tokens'] == 3
    assert d['usage']['completion_tokens'] == 12  # default max_tokens 16 > natural 12


def test_chat_logprobs(server):
    d = chat(server, max_tokens=2, logprobs=True, top_logprobs=3).json()
    content = d['choices'][0]['logprobs']['content']
    assert len(content) == 2
    for e in content:
        assert e['logprob'] <= 0 and len(e['top_logprobs']) == 3
        assert bytes(e['bytes']).decode() == e['token']


# ---- streaming -----------------------------------------------------------------------------

def test_stream_chat_framing(server):
    s = Stream(server, {'model': MODEL, 'stream': True, 'max_tokens': 5,
                        'stream_options': {'include_usage': True},
                        'messages': [{'role': 'user', 'content': 'stream it'}]})
    try:
        assert s.status == 200
        assert s.headers['content-type'] == 'text/event-stream'
        assert s.headers['transfer-encoding'] == 'chunked'
        events = list(s.events())
    finally:
        s.close()
    assert events[-1] == '[DONE]'
    chunks = [json.loads(e) for e in events[:-1]]
    ids = {c['id'] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith('chatcmpl-')
    assert all(c['object'] == 'chat.completion.chunk' for c in chunks)
    assert chunks[0]['choices'][0]['delta'] == {'role': 'assistant', 'content': ''}
    text = ''.join(c['choices'][0]['delta'].get('content', '') for c in chunks if c['choices'])
    assert len(text.split()) == 5
    fin = [c for c in chunks if c['choices'] and c['choices'][0]['finish_reason']]
    assert len(fin) == 1 and fin[0]['choices'][0]['finish_reason'] == 'length'
    usage = chunks[-1]
    assert usage['choices'] == [] and usage['usage']['completion_tokens'] == 5
    assert all(c['usage'] is None for c in chunks[:-1])


def test_stream_completions(server):
    s = Stream(server, {'model': MODEL, 'stream': True, 'prompt': 'p', 'max_tokens': 3},
               path='/v1/completions')
    try:
        events = list(s.events())
    finally:
        s.close()
    assert events[-1] == '[DONE]'
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c['object'] == 'text_completion' and 'usage' not in c for c in chunks)
    assert ''.join(c['choices'][0]['text'] for c in chunks).count(' ') == 2
    assert chunks[-1]['choices'][0]['finish_reason'] == 'length'


def test_openai_client(server):
    openai = pytest.importorskip('openai')
    client = openai_client(openai, server)
    assert sorted(m.id for m in client.models.list()) == sorted([MODEL, 'other-model'])
    r = client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'x'}],
                                       max_tokens=4)
    assert r.choices[0].finish_reason == 'length' and r.usage.completion_tokens == 4
    parts = []
    usage = None
    for chunk in client.chat.completions.create(
            model=MODEL, messages=[{'role': 'user', 'content': 'x'}], max_tokens=4, stream=True,
            stream_options={'include_usage': True}):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or '')
        if chunk.usage:
            usage = chunk.usage
    assert ''.join(parts) == r.choices[0].message.content
    assert usage.completion_tokens == 4
    c = client.completions.create(model='other-model', prompt='hello', max_tokens=2)
    assert c.choices[0].finish_reason == 'length' and c.model == 'other-model'
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model='nope', messages=[{'role': 'user', 'content': 'x'}])
    assert e.value.body['code'] == 'model_not_found'
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'x'}],
                                       temperature=3)
    assert e.value.body['param'] == 'temperature'


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize('body,param', [
    ('{"model": "mock-model", "messages": [', None),
    ('[]', None),
    ({'messages': [{'role': 'user', 'content': 'x'}]}, 'model'),
    ({'model': 7, 'messages': [{'role': 'user', 'content': 'x'}]}, 'model'),
    ({'model': MODEL}, 'messages'),
    ({'model': MODEL, 'messages': 'hi'}, 'messages'),
    ({'model': MODEL, 'messages': [{'role': 'user', 'content': 5}]}, 'messages[0].content'),
    ({'model': MODEL, 'messages': [{'role': 'user', 'content': 'x'}], 'temperature': 2.5},
     'temperature'),
    ({'model': MODEL, 'messages': [{'role': 'user', 'content': 'x'}], 'temperature': 'hot'},
     'temperature'),
    ({'model': MODEL, 'messages': [{'role': 'user', 'content': 'x'}], 'top_p': 0}, 'top_p'),
    ({'model': MODEL, 'messages': [{'role': 'user', 'content': 'x'}], 'max_tokens': 0},
     'max_tokens'),
    ({'model': MODEL, 'messages': [{'role': 'user', 'content': 'x'}], 'stop': list('abcde')},
     'stop'),
    ({'model': MODEL, 'messages': [{'role': 'user', 'content': 'x'}], 'n': 17}, 'n'),
    ({'model': MODEL, 'messages': [{'role': 'user', 'content': 'x'}], 'stream': 1}, 'stream'),
])
def test_bad_requests(server, body, param):
    r = post(server, '/v1/chat/completions', body if not isinstance(body, str) else body.encode())
    err = error_of(r, 400, param)
    assert err['type'] == 'invalid_request_error'


def test_unknown_model_is_404_at_once(server):
    t0 = time.monotonic()
    r = chat(server, model='no-such-model')
    err = error_of(r, 404, 'model', 'model_not_found')
    assert 'no-such-model' in err['message']
    assert time.monotonic() - t0 < 1.0 * SLOW


def test_context_length_from_engine(server):
    r = chat(server, max_tokens=600)  # context_length is 512
    err = error_of(r, 400, 'messages', 'context_length_exceeded')
    assert '512' in err['message']
    s = Stream(server, {'model': MODEL, 'stream': True, 'max_tokens': 600,
                        'messages': [{'role': 'user', 'content': 'x'}]})
    try:
        assert s.status == 400  # failed before any token: a plain error answer, not a stream
        assert json.loads(s.body())['error']['code'] == 'context_length_exceeded'
    finally:
        s.close()


def test_body_too_large(server):
    big = {'model': MODEL, 'messages': [{'role': 'user', 'content': 'x' * 70000}]}
    error_of(post(server, '/v1/chat/completions', big), 413, None, 'request_too_large')
    # without Content-Length (chunked upload) the limit holds too
    code, body = curl('-H', 'Transfer-Encoding: chunked', '-H', 'Content-Type: application/json',
                      '--data-binary', json.dumps(big),
                      'http://127.0.0.1:%d/v1/chat/completions' % server)
    assert code == 413 and json.loads(body)['error']['code'] == 'request_too_large'
    assert chat(server).status == 200


def test_routes_and_methods(server):
    error_of(get(server, '/nope'), 404, None, 'not_found')
    r = get(server, '/v1/chat/completions')
    error_of(r, 405, None, 'method_not_allowed')
    assert r.header('Allow') == 'POST'
    error_of(request(server, 'DELETE', '/v1/models'), 405, None, 'method_not_allowed')
    assert request(server, 'HEAD', '/live').status == 200


# ---- metrics -------------------------------------------------------------------------------

def test_metrics(server):
    before = metrics(server)
    assert chat(server, max_tokens=4).status == 200
    assert chat(server, model='absent').status == 404
    s = Stream(server, {'model': MODEL, 'stream': True, 'max_tokens': 2,
                        'messages': [{'role': 'user', 'content': 'm'}]})
    list(s.events())
    s.close()
    r = get(server, '/metrics')
    assert r.header('Content-Type').startswith('text/plain; version=0.0.4')
    text = r.body.decode()
    for family in ('requests_total', 'inflight_requests', 'queued_requests',
                   'time_to_first_token_seconds', 'inter_token_latency_seconds',
                   'request_duration_seconds', 'input_sequence_tokens',
                   'output_sequence_tokens', 'input_tokens_total', 'output_tokens_total',
                   'disconnected_clients', 'cancelled_requests_total'):
        assert '# TYPE dynamo_frontend_%s ' % family in text, family
    after = metrics(server)
    d = lambda name, **kw: metric_sum(after, name, **kw) - metric_sum(before, name, **kw)
    assert d('dynamo_frontend_requests_total', model=MODEL, status='success',
             request_type='unary', endpoint='chat_completions') == 1
    assert d('dynamo_frontend_requests_total', model=MODEL, request_type='stream') == 1
    assert d('dynamo_frontend_requests_total', code='404') == 1
    assert d('dynamo_frontend_output_tokens_total', model=MODEL) == 6
    assert d('dynamo_frontend_time_to_first_token_seconds_count', model=MODEL) == 2
    assert d('dynamo_frontend_request_duration_seconds_count', model=MODEL) == 2
    assert metric_sum(after, 'dynamo_frontend_inflight_requests', model=MODEL) == 0
    assert metric_sum(after, 'turbine_mock_requests_total', model=MODEL) >= 2
    # The router adds its decisions to the registry in batches (at most every FLUSH_NS): wait.
    wait_for(lambda: metric_sum(metrics(server), 'turbine_router_decisions_total',
                                policy='round_robin') >= 2, 5, 'router decisions counted')
