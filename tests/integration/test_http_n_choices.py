"""`n` > 1 through the http frontend (docs/http.md "Several choices"): one engine call per choice
on the instance the router chose for the first, answers assembled into n choices (unary) or
interleaved chunks each naming its choice's index (streamed), usage counted once for the prompt
and summed for the completions.  Mock replicas behind a round-robin router, raw HTTP and the
OpenAI Python client."""
import json

import pytest

from serving_util import (SLOW, Stream, chat, free_port, http_component, metric_sum, metrics,
                          mock_component, post, serving, wait_for)

MODEL = 'mock-model'


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port = free_port()
    with serving(tmp_path_factory.mktemp('nchoices'), port, [
        http_component(port, router='router'),
        ('router', 'router', 1, {'policy': 'round_robin'}),
        mock_component(MODEL, replicas=2, speedup=0, output_tokens=6, context_length=512),
        mock_component('slow', name='slow', ttft='0s', itl='50ms', output_tokens=400),
    ], {MODEL, 'slow'}):
        yield port


def texts(body):
    return [c['message']['content'] for c in body['choices']]


def test_unary_chat_n3(server):
    r = chat(server, 'three please', n=3, max_tokens=4, seed=11)
    assert r.status == 200, r.body
    body = r.json()
    assert [c['index'] for c in body['choices']] == [0, 1, 2]
    assert all(c['finish_reason'] == 'length' for c in body['choices'])
    assert all(c['message']['role'] == 'assistant' for c in body['choices'])
    assert all(len(t.split()) == 4 for t in texts(body))
    u = body['usage']
    assert u['completion_tokens'] == 12  # 3 x 4, summed
    one = chat(server, 'three please', max_tokens=4, seed=11).json()['usage']
    assert u['prompt_tokens'] == one['prompt_tokens']  # counted once
    assert u['total_tokens'] == u['prompt_tokens'] + 12
    assert r.header('x-turbine-instance')


def test_seeded_choices_differ_and_repeat(server):
    a = texts(chat(server, 'seeded', n=3, max_tokens=5, seed=100).json())
    b = texts(chat(server, 'seeded', n=3, max_tokens=5, seed=100).json())
    assert a == b
    assert len(set(a)) == 3
    # choice i uses seed + i: choice 0 is the n=1 answer with the same seed, choice 1 the answer
    # with seed + 1
    assert a[0] == chat(server, 'seeded', max_tokens=5, seed=100).json()['choices'][0][
        'message']['content']
    assert a[1] == chat(server, 'seeded', max_tokens=5, seed=101).json()['choices'][0][
        'message']['content']


def test_completions_n2_logprobs(server):
    r = post(server, '/v1/completions', {'model': MODEL, 'prompt': 'p', 'max_tokens': 3, 'n': 2,
                                         'seed': 1, 'logprobs': 1})
    assert r.status == 200, r.body
    body = r.json()
    assert [c['index'] for c in body['choices']] == [0, 1]
    for c in body['choices']:
        assert c['finish_reason'] == 'length'
        assert len(c['logprobs']['tokens']) == 3
        assert ''.join(c['logprobs']['tokens']) == c['text']
    assert body['choices'][0]['text'] != body['choices'][1]['text']
    assert body['usage']['completion_tokens'] == 6


def stream_chunks(port, body, path='/v1/chat/completions'):
    s = Stream(port, body, path=path)
    try:
        assert s.status == 200
        events = list(s.events())
    finally:
        s.close()
    assert events[-1] == '[DONE]' and events.count('[DONE]') == 1
    return [json.loads(e) for e in events[:-1]]


def test_stream_chat_n3(server):
    chunks = stream_chunks(server, {'model': MODEL, 'stream': True, 'max_tokens': 4, 'n': 3,
                                    'seed': 7, 'stream_options': {'include_usage': True},
                                    'messages': [{'role': 'user', 'content': 'stream three'}]})
    by = {0: [], 1: [], 2: []}
    fins = {}
    for c in chunks[:-1]:
        assert len(c['choices']) == 1 and c['usage'] is None
        ch = c['choices'][0]
        by[ch['index']].append(ch['delta'].get('content') or '')
        if ch['finish_reason']:
            assert ch['index'] not in fins
            fins[ch['index']] = ch['finish_reason']
    assert fins == {0: 'length', 1: 'length', 2: 'length'}
    usage = chunks[-1]
    assert usage['choices'] == [] and usage['usage']['completion_tokens'] == 12
    streamed = [''.join(by[i]) for i in range(3)]
    unary = texts(chat(server, 'stream three', n=3, max_tokens=4, seed=7).json())
    assert streamed == unary


def test_stream_completions_n2(server):
    chunks = stream_chunks(server, {'model': MODEL, 'stream': True, 'prompt': 'p',
                                    'max_tokens': 3, 'n': 2, 'seed': 3}, path='/v1/completions')
    idx = {c['choices'][0]['index'] for c in chunks}
    assert idx == {0, 1}
    fins = [c['choices'][0]['index'] for c in chunks if c['choices'][0]['finish_reason']]
    assert sorted(fins) == [0, 1]


def test_n_over_cap_and_failure(server):
    r = chat(server, n=17)
    assert r.status == 400 and r.json()['error']['param'] == 'n'
    r = chat(server, n=0)
    assert r.status == 400 and r.json()['error']['param'] == 'n'
    # the engine refuses every choice: the request fails once, with the engine's error
    r = chat(server, n=3, max_tokens=600)  # context_length is 512
    assert r.status == 400 and r.json()['error']['code'] == 'context_length_exceeded'
    assert chat(server, n=2).status == 200


def test_request_counted_once(server):
    before = metrics(server)
    assert chat(server, 'counted', n=4, max_tokens=2).status == 200
    after = metrics(server)
    d = lambda name, **kw: metric_sum(after, name, **kw) - metric_sum(before, name, **kw)
    assert d('dynamo_frontend_requests_total', model=MODEL, status='success') == 1
    assert d('dynamo_frontend_output_tokens_total', model=MODEL) == 8
    assert d('dynamo_frontend_request_duration_seconds_count', model=MODEL) == 1
    assert metric_sum(after, 'dynamo_frontend_inflight_requests', model=MODEL) == 0
    # one engine call per choice (the engines add to the registry in batches: wait)
    wait_for(lambda: metric_sum(metrics(server), 'turbine_mock_requests_total', model=MODEL) -
             metric_sum(before, 'turbine_mock_requests_total', model=MODEL) >= 4, 5,
             'four engine calls counted')


def test_openai_client_n(server):
    openai = pytest.importorskip('openai')
    import httpx
    client = openai.OpenAI(base_url='http://127.0.0.1:%d/v1' % server, api_key='unused',
                           max_retries=0, http_client=httpx.Client(timeout=20 * SLOW))
    r = client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'x'}],
                                       max_tokens=3, n=3, seed=5)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage.completion_tokens == 9
    parts = {0: '', 1: '', 2: ''}
    usage = None
    for chunk in client.chat.completions.create(
            model=MODEL, messages=[{'role': 'user', 'content': 'x'}], max_tokens=3, n=3, seed=5,
            stream=True, stream_options={'include_usage': True}):
        for c in chunk.choices:
            parts[c.index] += c.delta.content or ''
        if chunk.usage:
            usage = chunk.usage
    assert [parts[i] for i in range(3)] == [c.message.content for c in r.choices]
    assert usage.completion_tokens == 9
    c = client.completions.create(model=MODEL, prompt='hello', max_tokens=2, n=2, seed=9)
    assert [x.index for x in c.choices] == [0, 1]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'x'}],
                                       n=20)
    assert e.value.body['param'] == 'n'


def test_client_gone_cancels_every_choice(server):
    before = metrics(server)
    s = Stream(server, {'model': 'slow', 'stream': True, 'n': 3, 'seed': 1,
                        'messages': [{'role': 'user', 'content': 'long'}]})
    events = s.events()
    seen = set()
    while seen != {0, 1, 2}:  # every choice is running
        seen.add(json.loads(next(events))['choices'][0]['index'])
    s.close()
    d = lambda ms, name, **kw: metric_sum(ms, name, **kw) - metric_sum(before, name, **kw)
    wait_for(lambda: d(metrics(server), 'turbine_mock_cancelled_total', model='slow') == 3, 5,
             'the engine to cancel the three calls')
    ms = metrics(server)
    assert d(ms, 'dynamo_frontend_disconnected_clients', model='slow') == 1
    assert d(ms, 'dynamo_frontend_cancelled_requests_total', model='slow',
             reason='disconnect') == 1
    assert d(ms, 'dynamo_frontend_requests_total', model='slow', code='499') == 1
    assert metric_sum(ms, 'dynamo_frontend_inflight_requests', model='slow') == 0
