"""The whole path with a real model: http -> preprocessor -> router -> engine_cpu, over HTTP.

TinyStories served greedily gives the reference implementation's tokens (tools/tb_ref_forward.py)
and readable stories; the preprocessor offers the model only while an engine serves it; stop
strings, usage, context limits, batching and the tokenize endpoints behave."""
import concurrent.futures
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED
from serving_util import (Stream, Turbine, deployment, free_port, get, http_component,
                          metric_sum, metrics, post, wait_live, wait_for, wait_models,
                          wait_ready)

TINY = os.path.join(SHARED, 'models', 'tinystories-656k')
MODEL = 'tinystories'

pytestmark = pytest.mark.skipif(not os.path.isdir(TINY),
                                reason='skipped: ../shared/models/tinystories-656k is absent')


def reference(tokens, n):
    """Greedy continuation by the independent PyTorch reference: (generated ids, text)."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'tb_ref_forward.py'), TINY,
                          '--tokens', ','.join(str(t) for t in tokens), '--generate', str(n),
                          '--json'], capture_output=True, text=True, timeout=300, check=True)
    gen = json.loads(out.stdout)['generated']
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(TINY, 'tokenizer.json'))
    full = tok.decode(list(tokens) + gen, skip_special_tokens=True)
    prefix = tok.decode(list(tokens), skip_special_tokens=True)
    assert full.startswith(prefix)
    return gen, full[len(prefix):]


def components(port, engine=True, engine_cfg=None, router=True):
    comps = [http_component(port, **({'router': 'router'} if router else {}))]
    if router:
        comps.append(('router', 'router', 1, {'policy': 'least_loaded'}))
    comps.append(('pre', 'preprocessor', 1, dict({'served_model_name': MODEL, 'model': TINY},
                                                 **({'router': 'router'} if router else {}))))
    if engine:
        cfg = {'served_model_name': MODEL, 'model': TINY, 'kv_cache': '64MiB', 'threads': 2}
        cfg.update(engine_cfg or {})
        comps.append(('engine', 'engine_cpu', 1, cfg))
    return comps


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port = free_port()
    t = Turbine(tmp_path_factory.mktemp('e2e'), deployment(port, components(port)))
    try:
        wait_ready(port, timeout=30)
        yield port, t
    finally:
        t.stop()


def complete(port, **body):
    body.setdefault('model', MODEL)
    r = post(port, '/v1/completions', body, timeout=60)
    assert r.status == 200, r.body
    return r.json()


def test_greedy_from_bos_matches_reference(server):
    port, _ = server
    gen, text = reference([1], 120)
    r = complete(port, prompt=[1], max_tokens=120, temperature=0)
    choice = r['choices'][0]
    assert choice['text'] == text
    assert r['usage']['prompt_tokens'] == 1
    assert r['usage']['completion_tokens'] == len(gen)
    stopped_at_eos = len(gen) < 120
    assert choice['finish_reason'] == ('stop' if stopped_at_eos else 'length')
    # a readable story: English words and punctuation
    words = re.findall(r"[A-Za-z']+", text)
    assert len(words) >= 40
    assert text.startswith('Once upon a time')
    common = {'the', 'a', 'was', 'and', 'to', 'she', 'he', 'her', 'his', 'it'}
    assert sum(w.lower() in common for w in words) >= 8, text


def test_text_prompt_matches_reference(server):
    port, _ = server
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(TINY, 'tokenizer.json'))
    prompt = 'Tom and his dog went to the park. They'
    ids = tok.encode(prompt).ids
    gen, text = reference(ids, 60)
    r = complete(port, prompt=prompt, max_tokens=60, temperature=0)
    assert r['choices'][0]['text'] == text
    assert r['usage']['prompt_tokens'] == len(ids)


def test_streamed_text_equals_unary_text(server):
    port, _ = server
    unary = complete(port, prompt='Once upon a time', max_tokens=50, temperature=0)
    s = Stream(port, {'model': MODEL, 'prompt': 'Once upon a time', 'max_tokens': 50,
                      'temperature': 0, 'stream': True, 'stream_options': {'include_usage': True}},
               path='/v1/completions', timeout=60)
    events = [json.loads(d) for d in s.events() if d != '[DONE]']
    s.close()
    text = ''.join(e['choices'][0]['text'] for e in events if e.get('choices'))
    assert text == unary['choices'][0]['text']
    assert events[-1]['usage']['completion_tokens'] == unary['usage']['completion_tokens']


def test_alone_and_among_15_others_same_tokens(server):
    port, _ = server
    prompt = 'The little cat'
    alone = complete(port, prompt=prompt, max_tokens=40, temperature=0)['choices'][0]['text']
    others = ['Once upon a time there was a big', 'Sam had a red ball', 'The sun was hot',
              'Lily wanted to', 'A bird sang', 'Max and Mia', 'In the garden', 'The dog ran',
              'One day, a boy', 'Mom said', 'The tree was tall', 'Ben liked cake',
              'It was raining', 'The fish swam', 'Anna found a box']
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        futs = [ex.submit(complete, port, prompt=p, max_tokens=40, temperature=0)
                for p in [prompt] + others]
        results = [f.result() for f in futs]
    assert results[0]['choices'][0]['text'] == alone
    # and each of the others equals its own solo run
    solo = complete(port, prompt=others[3], max_tokens=40, temperature=0)
    assert results[4]['choices'][0]['text'] == solo['choices'][0]['text']


def test_logprobs_come_from_the_engine(server):
    # engine_cpu sends each token's raw logprob and its top alternatives (it once sent none)
    port, _ = server
    r = complete(port, prompt='Once upon a time', max_tokens=6, temperature=0, logprobs=3)
    lp = r['choices'][0]['logprobs']
    assert len(lp['tokens']) == 6 and len(lp['token_logprobs']) == 6
    for chosen, tops in zip(lp['token_logprobs'], lp['top_logprobs']):
        assert chosen is not None and chosen <= 0
        assert len(tops) == 3 and all(v <= 0 for v in tops.values())
        assert abs(chosen - max(tops.values())) < 1e-6  # greedy: the most likely token


def test_seeded_sampling_repeats(server):
    port, _ = server
    a = complete(port, prompt='Once upon a time', max_tokens=30, temperature=0.9, seed=7)
    b = complete(port, prompt='Once upon a time', max_tokens=30, temperature=0.9, seed=7)
    c = complete(port, prompt='Once upon a time', max_tokens=30, temperature=0.9, seed=8)
    assert a['choices'][0]['text'] == b['choices'][0]['text']
    assert a['choices'][0]['text'] != c['choices'][0]['text']


def test_stop_string_across_tokens(server):
    port, _ = server
    full = complete(port, prompt=[1], max_tokens=60, temperature=0)['choices'][0]['text']
    # a stop string that spans token boundaries ("little girl" is several pieces)
    stop = 'little girl'
    assert stop in full
    r = complete(port, prompt=[1], max_tokens=60, temperature=0, stop=[stop, 'zzzz'])
    assert r['choices'][0]['finish_reason'] == 'stop'
    assert r['choices'][0]['text'] == full[:full.index(stop)]
    assert r['usage']['completion_tokens'] < 60


def test_prompt_longer_than_context_is_400(server):
    port, _ = server
    r = post(port, '/v1/completions', {'model': MODEL, 'prompt': 'word ' * 600,
                                       'max_tokens': 5})
    assert r.status == 400, r.body
    msg = r.json()['error']['message']
    assert '512' in msg and 'context' in msg
    r = post(port, '/v1/completions', {'model': MODEL, 'prompt': 'Once upon a time',
                                       'max_tokens': 600})
    assert r.status == 400
    assert 'max_tokens' in r.json()['error']['message']


def test_chat_with_fallback_template(server):
    port, _ = server
    r = post(port, '/v1/chat/completions',
             {'model': MODEL, 'messages': [{'role': 'user', 'content': 'Tell me a story'}],
              'max_tokens': 16, 'temperature': 0})
    assert r.status == 200, r.body
    body = r.json()
    # ChatML fallback: <|im_start|>user\nTell me a story<|im_end|>\n<|im_start|>assistant\n
    assert body['usage']['prompt_tokens'] > 10
    assert body['choices'][0]['message']['role'] == 'assistant'


def test_openai_client(server):
    port, _ = server
    import openai
    client = openai.OpenAI(base_url='http://127.0.0.1:%d/v1' % port, api_key='none', timeout=60)
    assert [m.id for m in client.models.list().data] == [MODEL]
    c = client.completions.create(model=MODEL, prompt='Once upon a time', max_tokens=20,
                                  temperature=0)
    assert c.choices[0].text and c.usage.completion_tokens == 20
    chunks = list(client.completions.create(model=MODEL, prompt='Once upon a time', max_tokens=20,
                                            temperature=0, stream=True))
    assert ''.join(ch.choices[0].text for ch in chunks if ch.choices) == c.choices[0].text


def test_engine_metrics_visible(server):
    port, _ = server
    text = get(port, '/metrics').body.decode()
    assert re.search(r'^vllm:generation_tokens_total\{model_name="tinystories",engine="engine"\} '
                     r'\d+', text, re.M), text[:2000]
    assert 'vllm:kv_cache_usage_perc' in text


def test_model_offered_only_while_an_engine_serves_it(tmp_path):
    """The preprocessor runs in the head; the engine in a worker joined over tcp.  /v1/models
    lists the model exactly while the worker lives."""
    port = free_port()
    reg = free_port()
    head_yaml = deployment(port, components(port, engine=False),
                           extra='registry:\n  listen: tcp://127.0.0.1:%d\n'
                                 '  heartbeat_interval: 200ms\n  lease_ttl: 1s' % reg)
    worker_yaml = deployment(0, [('engine', 'engine_cpu', 1,
                                  {'served_model_name': MODEL, 'model': TINY,
                                   'kv_cache': '32MiB', 'threads': 1})])
    with Turbine(tmp_path, head_yaml, name='head') as head:
        wait_live(port)
        wait_models(port, set())
        r = post(port, '/v1/completions', {'model': MODEL, 'prompt': 'hi', 'max_tokens': 2})
        assert r.status == 404 and r.json()['error']['code'] == 'model_not_found'
        head.wait_log(r"waiting for an engine serving model 'tinystories'")
        worker = Turbine(tmp_path, worker_yaml, name='worker',
                         join='tcp://127.0.0.1:%d' % reg)
        try:
            wait_models(port, {MODEL}, timeout=30)
            r = complete(port, prompt='Once upon a time', max_tokens=8, temperature=0)
            assert r['usage']['completion_tokens'] == 8
            worker.kill()
            wait_models(port, set(), timeout=5)
            head.wait_log(r"no engine serves model 'tinystories' any more")
        finally:
            worker.kill()


def test_tokenize_and_detokenize_endpoints(server):
    port, _ = server
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(TINY, 'tokenizer.json'))
    r = post(port, '/tokenize', {'model': MODEL, 'prompt': 'Once upon a time',
                                 'return_token_strs': True})
    assert r.status == 200, r.body
    body = r.json()
    assert body['tokens'] == tok.encode('Once upon a time').ids
    assert body['count'] == len(body['tokens'])
    assert body['max_model_len'] == 512
    assert body['token_strs'] == tok.encode('Once upon a time').tokens
    r = post(port, '/tokenize', {'model': MODEL, 'prompt': 'Once', 'add_special_tokens': False})
    assert r.json()['tokens'] == tok.encode('Once', add_special_tokens=False).ids
    # a conversation goes through the chat template (ChatML fallback here)
    r = post(port, '/tokenize', {'model': MODEL,
                                 'messages': [{'role': 'user', 'content': 'Hi'}]})
    assert r.status == 200 and r.json()['count'] > 5
    ids = tok.encode('Tom had a big red ball.').ids
    r = post(port, '/detokenize', {'model': MODEL, 'tokens': ids})
    assert r.status == 200, r.body
    assert r.json()['prompt'] == tok.decode(ids, skip_special_tokens=False)
    # errors
    r = post(port, '/tokenize', {'model': 'nope', 'prompt': 'x'})
    assert r.status == 404 and r.json()['error']['code'] == 'model_not_found'
    r = post(port, '/detokenize', {'model': MODEL, 'tokens': [5, 999999]})
    assert r.status == 400 and 'vocabulary' in r.json()['error']['message']
    r = post(port, '/detokenize', {'model': MODEL, 'tokens': 'abc'})
    assert r.status == 400 and r.json()['error']['param'] == 'tokens'
    assert get(port, '/tokenize').status == 405


def test_cli_tokenize_matches_hf():
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(TINY, 'tokenizer.json'))
    turbine = os.path.join(os.environ.get('TB_BUILD') or os.path.join(ROOT, 'build', 'release'),
                           'bin', 'turbine')
    text = 'Lily and Ben played in the park. "Look!" she said.'
    out = subprocess.run([turbine, 'tokenize', '--model', TINY, '--text', text],
                         capture_output=True, text=True, check=True).stdout
    assert [int(x) for x in out.split()] == tok.encode(text).ids
    out = subprocess.run([turbine, 'tokenize', '--model', TINY, '--pieces'], input=text,
                         capture_output=True, text=True, check=True).stdout
    assert [l.split('\t')[1] for l in out.splitlines()] == tok.encode(text).tokens
    ids = tok.encode(text).ids
    out = subprocess.run([turbine, 'detokenize', '--model', TINY] + [str(i) for i in ids],
                         capture_output=True, text=True, check=True).stdout
    assert out == tok.decode(ids, skip_special_tokens=True) + '\n'


def test_n_choices_share_the_prompt(server):
    """n = 3 with a seed: three different stories, usage summed over them, and choices 1 and 2
    (started once choice 0's first token came) find the prompt in the engine's prefix cache."""
    port, _ = server
    prompt = ('Once upon a time there was a little girl named Lily who lived in a small house '
              'near the big green park with her mother, her father and a fluffy white dog '
              'called Max. Every morning Lily and Max ran to the park to play')
    hits = lambda: metric_sum(metrics(port), 'vllm:prefix_cache_hits_total')
    before = hits()
    r = complete(port, prompt=prompt, max_tokens=12, temperature=1.0, seed=42, n=3,
                 ignore_eos=True)
    assert [c['index'] for c in r['choices']] == [0, 1, 2]
    assert len({c['text'] for c in r['choices']}) == 3
    assert all(c['finish_reason'] == 'length' for c in r['choices'])
    assert r['usage']['completion_tokens'] == 3 * 12
    # choices 1 and 2 each found most of the prompt (its full blocks) in the prefix cache; the
    # engine adds to the registry in batches: wait
    p = r['usage']['prompt_tokens']
    wait_for(lambda: hits() - before >= p, 10, 'the prompt found in the prefix cache')
    one = complete(port, prompt=prompt, max_tokens=12, temperature=1.0, seed=42, ignore_eos=True)
    assert one['choices'][0]['text'] == r['choices'][0]['text']  # choice 0 keeps the seed
    assert r['usage']['prompt_tokens'] == one['usage']['prompt_tokens']
