"""The preprocessor in the whole path with the mock engine in token mode:
http -> preprocessor -> router -> mock(tokens).  Text comes from detokenizing the mock's ids
with the model's tokenizer; stop strings, usage, cancellation and engine loss pass through."""
import os
import time

import pytest

from conftest import SHARED
from serving_util import (SLOW, Stream, Turbine, deployment, free_port, get, http_component, metric_sum,
                          metrics, post, wait_for, wait_models, wait_ready)

TINY = os.path.join(SHARED, 'models', 'tinystories-656k')
MODEL = 'tiny-mock'

pytestmark = pytest.mark.skipif(not os.path.isdir(TINY),
                                reason='skipped: ../shared/models/tinystories-656k is absent')


def mock(**cfg):
    c = {'served_model_name': MODEL, 'kind': 'tokens', 'token_id_min': 3, 'token_id_max': 2047,
         'ttft': '1ms', 'itl': '1ms', 'output_tokens': 40}
    c.update(cfg)
    return ('engine', 'mock', 2, c)


def comps(port, **mock_cfg):
    return [http_component(port, router='router'),
            ('router', 'router', 1, {'policy': 'round_robin'}),
            ('pre', 'preprocessor', 1, {'served_model_name': MODEL, 'model': TINY,
                                        'router': 'router'}),
            mock(**mock_cfg)]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port = free_port()
    t = Turbine(tmp_path_factory.mktemp('pre'), deployment(port, comps(port)))
    try:
        wait_ready(port, timeout=30)
        yield port, t
    finally:
        t.stop()


def tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(os.path.join(TINY, 'tokenizer.json'))


def test_models_lists_the_preprocessed_model(server):
    port, _ = server
    wait_models(port, {MODEL})


def test_completion_text_is_the_detokenized_ids(server):
    port, _ = server
    r = post(port, '/v1/completions', {'model': MODEL, 'prompt': 'Once upon a time',
                                       'max_tokens': 20, 'logprobs': 1, 'seed': 3})
    assert r.status == 200, r.body
    body = r.json()
    choice = body['choices'][0]
    assert body['usage']['prompt_tokens'] == len(tokenizer().encode('Once upon a time').ids)
    assert body['usage']['completion_tokens'] == 20
    assert choice['finish_reason'] == 'length'
    # the text is the tokens' text, one logprob entry per token
    toks = choice['logprobs']['tokens']
    assert len(toks) == 20
    assert ''.join(toks) == choice['text']


def test_chat_streams_through_the_preprocessor(server):
    port, _ = server
    s = Stream(port, {'model': MODEL, 'messages': [{'role': 'user', 'content': 'Hi'}],
                      'max_tokens': 12, 'stream': True,
                      'stream_options': {'include_usage': True}})
    import json
    events = [json.loads(d) for d in s.events() if d != '[DONE]']
    s.close()
    assert events[0]['choices'][0]['delta']['role'] == 'assistant'
    assert events[-1]['usage']['completion_tokens'] == 12
    # ChatML fallback template around "Hi": more prompt tokens than the text alone
    assert events[-1]['usage']['prompt_tokens'] > len(tokenizer().encode('Hi').ids)


def test_stop_string_ends_and_cancels_the_engine(server):
    port, _ = server
    full = post(port, '/v1/completions', {'model': MODEL, 'prompt': 'x', 'max_tokens': 40,
                                          'seed': 11}).json()['choices'][0]['text']
    # a stop string from the middle of the text: everything before it comes back
    mid = len(full) // 2
    stop = full[mid:mid + 3]
    assert len(stop) == 3
    r = post(port, '/v1/completions', {'model': MODEL, 'prompt': 'x', 'max_tokens': 40,
                                       'seed': 11, 'stop': [stop]}).json()
    assert r['choices'][0]['finish_reason'] == 'stop'
    assert r['choices'][0]['text'] == full[:full.index(stop)]
    assert r['usage']['completion_tokens'] < 40


def test_client_disconnect_cancels_the_engine(server):
    port, _ = server
    before = metric_sum(metrics(port), 'turbine_mock_cancelled_total')
    s = Stream(port, {'model': MODEL, 'prompt': 'x', 'max_tokens': 5000, 'min_tokens': 5000,
                      'ignore_eos': True, 'stream': True}, path='/v1/completions')
    next(s.events())  # the stream is flowing
    s.close()
    wait_for(lambda: metric_sum(metrics(port), 'turbine_mock_cancelled_total') > before, 10,
             'the mock to see the cancel')


def test_errors_pass_through_as_400(server):
    port, _ = server
    r = post(port, '/v1/completions', {'model': MODEL, 'prompt': 'word ' * 9000,
                                       'max_tokens': 5})
    assert r.status == 400, r.body
    assert 'context' in r.json()['error']['message']
    r = post(port, '/v1/completions', {'model': MODEL, 'prompt': [1, 99999], 'max_tokens': 2})
    assert r.status == 400 and 'vocabulary' in r.json()['error']['message']


def test_model_follows_the_engines(tmp_path):
    """No engine: the model is not listed and requests are 404 at once; an engine joins: listed;
    the engine goes: unlisted again."""
    port = free_port()
    reg = free_port()
    head = deployment(port, comps(port)[:3],
                      extra='registry:\n  listen: tcp://127.0.0.1:%d\n'
                            '  heartbeat_interval: 200ms\n  lease_ttl: 1s' % reg)
    with Turbine(tmp_path, head, name='head'):
        wait_for(lambda: _status(port, '/live') == 200, 20, 'http up')
        wait_models(port, set())
        t0 = time.monotonic()
        r = post(port, '/v1/completions', {'model': MODEL, 'prompt': 'x'})
        assert r.status == 404 and time.monotonic() - t0 < 1.0 * SLOW
        worker = Turbine(tmp_path, deployment(0, [mock()]), name='worker',
                         join='tcp://127.0.0.1:%d' % reg)
        try:
            wait_models(port, {MODEL}, timeout=20)
            assert post(port, '/v1/completions',
                        {'model': MODEL, 'prompt': 'x', 'max_tokens': 3}).status == 200
            worker.stop()
            wait_models(port, set(), timeout=5)
        finally:
            worker.kill()


def _status(port, path):
    try:
        return get(port, path, timeout=2).status
    except OSError:
        return None
