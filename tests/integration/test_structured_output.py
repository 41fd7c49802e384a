"""Structured output through the whole path: http -> preprocessor -> router -> engine_cpu.

response_format json_schema / json_object and the raw `grammar` field become a GBNF grammar on
the gen_request; the engine compiles it once per text and the sampler masks every step.  With
the real TinyStories model and with a random-weight model (32k SentencePiece vocabulary), a few
hundred requests with varied schemas all finish with text that parses and validates (Python
`jsonschema`).  TinyStories' 2048-token vocabulary has no '{', '}', '[', ']' or '\\' (and no
byte tokens): it cannot spell a JSON object or array at all, so its schemas are the scalar ones
(strings, numbers, enums, formats...) and an object schema is refused with a 400 that says so;
the random-weight model, whose vocabulary has byte tokens, gets nested objects and arrays.
json_object always parses; json_object always parses; refusals name the keyword and its path, a bad grammar
its line:col; the mock engine refuses a grammar rather than ignoring it; the official `openai`
client's response_format and beta.chat.completions.parse() (pydantic) work against the server.
"""
import concurrent.futures
import json
import os
import random
import re
import sys

import pytest

from conftest import BUILD, ROOT, SHARED
from serving_util import (Turbine, deployment, free_port, http_component, mock_component, post,
                          wait_ready)

TINY = os.path.join(SHARED, 'models', 'tinystories-656k')
SPM = os.path.join(SHARED, 'tokenizer-vectors', 'ggml-vocab-llama-spm.gguf')
ASAN = 'asan' in BUILD
N_TINY = int(os.environ.get('TB_STRUCT_REQUESTS', '60' if ASAN else '200'))
N_RANDOM = int(os.environ.get('TB_STRUCT_REQUESTS_RANDOM', '20' if ASAN else '100'))

pytestmark = pytest.mark.skipif(not os.path.isdir(TINY),
                                reason='skipped: ../shared/models/tinystories-656k is absent')

FORMATS = ['date', 'time', 'date-time', 'uuid', 'ipv4']
WORDS = ['id', 'name', 'city', 'kind', 'n', 'tags', 'values', 'ok', 'age', 'title']


# ---- schemas -------------------------------------------------------------------------------
# Every string is bounded (maxLength, enum, const or a format) and every array has maxItems, so
# that every sentence of the grammar is short: a model cannot wander off within max_tokens.

def scalar(r, spellable=False):
    """A scalar schema; `spellable`: only what TinyStories' vocabulary can spell (no object
    constants, no 'é', no escaped quote)."""
    kind = r.choice(['integer', 'number', 'boolean', 'null', 'string', 'string', 'enum',
                     'const', 'format', 'nullable'])
    if kind == 'string':
        lo = r.randint(0, 3)
        return {'type': 'string', 'minLength': lo, 'maxLength': lo + r.randint(0, 8)}
    if kind == 'enum':
        pool = ['red', 'green', 'blue sky', 1, 2.5, None, True]
        return {'enum': r.sample(pool + ([] if spellable else ['é', 'q"uote']), r.randint(1, 4))}
    if kind == 'const':
        return {'const': r.choice(['fixed', 7, False, None] + ([] if spellable else [{'a': 'b'}]))}
    if kind == 'format':
        return {'type': 'string', 'format': r.choice(FORMATS)}
    if kind == 'nullable':
        return {'type': [r.choice(['integer', 'boolean']), 'null']}
    return {'type': kind}


def schema(r, depth):
    if depth <= 0 or r.random() < 0.3:
        return scalar(r)
    kind = r.choice(['object', 'object', 'array', 'anyOf'])
    if kind == 'object':
        names = r.sample(WORDS, r.randint(1, 4))
        s = {'type': 'object', 'properties': {n: schema(r, depth - 1) for n in names},
             'required': [n for n in names if r.random() < 0.7]}
        if r.random() < 0.7:
            s['additionalProperties'] = False
        if r.random() < 0.3:
            s['description'] = 'annotations are ignored'
        return s
    if kind == 'array':
        lo = r.randint(0, 2)
        return {'type': 'array', 'items': schema(r, depth - 1), 'minItems': lo,
                'maxItems': lo + r.randint(0, 2)}
    return {'anyOf': [schema(r, depth - 1) for _ in range(r.randint(2, 3))]}


def random_schemas(seed, n, scalars_only=False):
    r = random.Random(seed)
    out = []
    for _ in range(n):
        if scalars_only:
            s = scalar(r, True)
            if r.random() < 0.3:
                s = {'anyOf': [scalar(r, True), scalar(r, True)]}
            out.append(s)
            continue
        s = schema(r, 3)
        if r.random() < 0.7:  # the usual shape: an object at the top
            s = {'type': 'object', 'properties': {'answer': s, 'count': {'type': 'integer'}},
                 'required': ['answer', 'count'], 'additionalProperties': False}
        out.append(s)
    return out


def validator(s):
    import jsonschema
    from datetime import datetime, time
    checker = jsonschema.FormatChecker()

    @checker.checks('time', raises=ValueError)
    def is_time(v):  # Python's ISO 8601 parser (jsonschema's needs an extra package)
        return not isinstance(v, str) or bool(time.fromisoformat(v.replace('Z', '+00:00')))

    @checker.checks('date-time', raises=ValueError)
    def is_dt(v):
        return not isinstance(v, str) or bool(datetime.fromisoformat(v.replace('Z', '+00:00')))
    return jsonschema.Draft202012Validator(s, format_checker=checker)


# ---- servers -------------------------------------------------------------------------------

def components(port, model_path, name):
    return [http_component(port, router='router'),
            ('router', 'router', 1, {'policy': 'least_loaded'}),
            ('pre', 'preprocessor', 1, {'served_model_name': name, 'model': model_path,
                                        'router': 'router'}),
            ('engine', 'engine_cpu', 1, {'served_model_name': name, 'model': model_path,
                                         'kv_cache': '64MiB', 'threads': 2})]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    port = free_port()
    t = Turbine(tmp_path_factory.mktemp('so-tiny'), deployment(port, components(port, TINY,
                                                                                 'tiny')))
    try:
        wait_ready(port, timeout=30)
        yield port
    finally:
        t.stop()


@pytest.fixture(scope='module')
def randw(tmp_path_factory):
    """A random-weight Llama model with the 32k SentencePiece vocabulary."""
    if not os.path.exists(SPM):
        pytest.skip('../shared/tokenizer-vectors absent')
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    import tb_make_model
    base = tmp_path_factory.mktemp('so-rand')
    path = str(base / 'rand')
    assert tb_make_model.main(['--out', path, '--format', 'hf', '--dtype', 'f32', '--layers', '1',
                               '--hidden', '64', '--heads', '4', '--kv-heads', '2',
                               '--intermediate', '96', '--vocab', '32000', '--tied',
                               '--context', '4096']) == 0
    port = free_port()
    t = Turbine(base, deployment(port, components(port, path, 'rand')))
    try:
        wait_ready(port, timeout=60)
        yield port
    finally:
        t.stop()


def ask(port, model, body, chat, timeout=120):
    body = dict(body, model=model)
    if chat:
        body['messages'] = [{'role': 'user', 'content': 'Tell me a story as JSON.'}]
        path = '/v1/chat/completions'
    else:
        body['prompt'] = 'Once upon a time'
        path = '/v1/completions'
    r = post(port, path, body, timeout=timeout)
    return r


def text_of(reply, chat):
    c = reply['choices'][0]
    return c['message']['content'] if chat else c['text']


def run_schemas(port, model, schemas, seed, max_tokens):
    def one(i):
        s = schemas[i]
        chat = i % 2 == 0
        body = {'response_format': {'type': 'json_schema',
                                    'json_schema': {'name': 's%d' % i, 'schema': s,
                                                    'strict': True}},
                'max_tokens': max_tokens, 'seed': seed + i,
                'temperature': [0, 0.7, 1.0, 1.3][i % 4]}
        if i % 5 == 1:
            body['top_p'] = 0.9
        if i % 7 == 2:
            body['top_k'] = 20
        if i % 11 == 3:
            body['min_p'] = 0.05
        r = ask(port, model, body, chat)
        assert r.status == 200, (s, r.body)
        reply = r.json()
        return s, text_of(reply, chat), reply['choices'][0]['finish_reason']
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(len(schemas))))
    for s, text, finish in results:
        assert finish == 'stop', (s, text, finish)
        value = json.loads(text)
        errors = list(validator(s).iter_errors(value))
        assert not errors, (s, text, [e.message for e in errors])
    return results


# ---- tests ---------------------------------------------------------------------------------

def test_json_schema_answers_always_valid_tinystories(tiny):
    results = run_schemas(tiny, 'tiny', random_schemas(15, N_TINY, scalars_only=True), 1000, 200)
    assert len(results) == N_TINY


def test_json_schema_answers_always_valid_random_weights(randw):
    results = run_schemas(randw, 'rand', random_schemas(16, N_RANDOM), 2000, 1500)
    assert len(results) == N_RANDOM


def test_tinystories_cannot_spell_an_object(tiny):
    r = ask(tiny, 'tiny', {'response_format': {'type': 'json_object'}}, True)
    assert r.status == 400, r.body
    assert 'cannot spell' in r.json()['error']['message']


@pytest.mark.parametrize('chat', [True, False])
def test_json_object_always_parses(randw, chat):
    for i in range(10):
        r = ask(randw, 'rand', {'response_format': {'type': 'json_object'}, 'max_tokens': 400,
                               'seed': i, 'temperature': 0.8}, chat)
        assert r.status == 200, r.body
        reply = r.json()
        text = text_of(reply, chat)
        if reply['choices'][0]['finish_reason'] == 'stop':
            assert isinstance(json.loads(text), dict), text
        else:  # cut by max_tokens inside an unbounded object: a prefix of one
            assert text.lstrip().startswith('{'), text


def test_text_format_is_unconstrained(tiny):
    plain = ask(tiny, 'tiny', {'max_tokens': 20, 'temperature': 0}, False).json()
    text = ask(tiny, 'tiny', {'max_tokens': 20, 'temperature': 0,
                              'response_format': {'type': 'text'}}, False).json()
    assert text_of(plain, False) == text_of(text, False)


def test_raw_grammar(tiny):
    g = 'root ::= ("yes" | "no") " because " [a-z]{3,8} "."'
    for i in range(8):
        r = ask(tiny, 'tiny', {'grammar': g, 'max_tokens': 50, 'seed': i, 'temperature': 1.0},
                i % 2 == 0)
        assert r.status == 200, r.body
        reply = r.json()
        assert reply['choices'][0]['finish_reason'] == 'stop'
        assert re.fullmatch(r'(yes|no) because [a-z]{3,8}\.', text_of(reply, i % 2 == 0))


def test_streamed_grammar_output_is_the_unary_one(tiny):
    from serving_util import Stream
    body = {'model': 'tiny', 'prompt': 'Once upon a time', 'max_tokens': 200, 'temperature': 0,
            'response_format': {'type': 'json_schema', 'json_schema': {'name': 'p', 'schema': {
                'type': 'string', 'minLength': 5, 'maxLength': 40}}}}
    r = post(tiny, '/v1/completions', body, timeout=60)
    assert r.status == 200, r.body
    unary = r.json()['choices'][0]['text']
    s = Stream(tiny, dict(body, stream=True), path='/v1/completions', timeout=60)
    events = [json.loads(d) for d in s.events() if d != '[DONE]']
    s.close()
    assert ''.join(e['choices'][0]['text'] for e in events if e.get('choices')) == unary
    assert 5 <= len(json.loads(unary)) <= 40


def test_logprobs_are_of_the_masked_distribution(tiny):
    body = {'grammar': 'root ::= [0-9] [0-9] [0-9]', 'max_tokens': 10, 'temperature': 0,
            'logprobs': True, 'top_logprobs': 5}
    r = ask(tiny, 'tiny', body, True)
    assert r.status == 200, r.body
    c = r.json()['choices'][0]
    assert len(c['message']['content']) == 3 and c['message']['content'].isdigit()
    import math
    for e in c['logprobs']['content']:
        assert e['logprob'] <= 0
        for t in e['top_logprobs']:  # only tokens the grammar allows are listed
            assert t['token'].isdigit() or t['token'] == '<|end_story|>', t
        assert sum(math.exp(t['logprob']) for t in e['top_logprobs']) <= 1.0 + 1e-4


def test_refusals_name_the_fault(tiny):
    bad = ask(tiny, 'tiny', {'response_format': {'type': 'json_schema', 'json_schema': {
        'name': 'x', 'schema': {'type': 'object', 'properties': {
            'age': {'type': 'integer', 'minimum': 0}}}}}}, True)
    assert bad.status == 400
    err = bad.json()['error']
    assert "'minimum'" in err['message'] and '/properties/age' in err['message'], err
    assert err['param'] == 'response_format.json_schema.schema'

    bad = ask(tiny, 'tiny', {'grammar': 'root ::= "a" (\n  "b"'}, False)
    assert bad.status == 400
    err = bad.json()['error']
    assert err['param'] == 'grammar' and "1:14: unclosed '('" in err['message'], err

    bad = ask(tiny, 'tiny', {'grammar': 'root ::= "a"',
                             'response_format': {'type': 'json_object'}}, True)
    assert bad.status == 400 and bad.json()['error']['param'] == 'grammar'

    bad = ask(tiny, 'tiny', {'response_format': {'type': 'json_schema'}}, True)
    assert bad.status == 400 and 'json_schema' in bad.json()['error']['param']

    bad = ask(tiny, 'tiny', {'response_format': {'type': 'xml'}}, True)
    assert bad.status == 400 and bad.json()['error']['param'] == 'response_format.type'


def test_mock_engine_refuses_a_grammar(tmp_path):
    port = free_port()
    t = Turbine(tmp_path, deployment(port, [http_component(port), mock_component('m')]))
    try:
        wait_ready(port)
        r = post(port, '/v1/chat/completions',
                 {'model': 'm', 'messages': [{'role': 'user', 'content': 'hi'}],
                  'response_format': {'type': 'json_object'}})
        assert r.status == 400, r.body
        assert 'cannot follow a grammar' in r.json()['error']['message']
        ok = post(port, '/v1/chat/completions',
                  {'model': 'm', 'messages': [{'role': 'user', 'content': 'hi'}],
                   'response_format': {'type': 'text'}})
        assert ok.status == 200
    finally:
        t.stop()


def test_openai_client_response_format_and_parse(randw, tiny):
    openai = pytest.importorskip('openai')
    pydantic = pytest.importorskip('pydantic')
    client = openai.OpenAI(base_url='http://127.0.0.1:%d/v1' % randw, api_key='none')

    class Pet(pydantic.BaseModel):
        name: str = pydantic.Field(max_length=16)
        legs: int
        kind: str = pydantic.Field(json_schema_extra={'enum': ['cat', 'dog', 'bird']})

    for seed in range(3):
        done = client.beta.chat.completions.parse(
            model='rand', messages=[{'role': 'user', 'content': 'A pet, as JSON.'}],
            response_format=Pet, max_tokens=200, seed=seed, temperature=0.9)
        pet = done.choices[0].message.parsed
        assert isinstance(pet, Pet) and pet.kind in ('cat', 'dog', 'bird'), done

    r = client.chat.completions.create(
        model='rand', messages=[{'role': 'user', 'content': 'JSON please'}],
        response_format={'type': 'json_schema', 'json_schema': {
            'name': 'point', 'strict': True, 'schema': {
                'type': 'object', 'properties': {'x': {'type': 'integer'},
                                                 'y': {'type': 'integer'}},
                'required': ['x', 'y'], 'additionalProperties': False}}},
        max_tokens=100, temperature=0)
    assert set(json.loads(r.choices[0].message.content)) == {'x', 'y'}

    r = client.completions.create(model='rand', prompt='Data:', max_tokens=100, temperature=0,
                                  extra_body={"grammar": "root ::= \"[\" [0-9]{1,3} (\",\" [0-9]{1,3}){0,4} \"]\""})
    assert isinstance(json.loads(r.choices[0].text), list)

    # TinyStories through the client: a schema its vocabulary can spell
    tc = openai.OpenAI(base_url='http://127.0.0.1:%d/v1' % tiny, api_key='none')
    r = tc.chat.completions.create(
        model='tiny', messages=[{'role': 'user', 'content': 'A colour'}],
        response_format={'type': 'json_schema', 'json_schema': {
            'name': 'c', 'schema': {'enum': ['red', 'green', 'blue']}}}, max_tokens=20)
    assert json.loads(r.choices[0].message.content) in ('red', 'green', 'blue')


def test_openai_client_include_usage_and_logprobs_shapes(tiny):
    """stream_options.include_usage through the official client (a last chunk with usage and
    no choices), and the logprobs shapes of both endpoints complete: every alternative has its
    text and bytes (chat), completions' top_logprobs are keyed by text with text_offset."""
    openai = pytest.importorskip('openai')
    client = openai.OpenAI(base_url='http://127.0.0.1:%d/v1' % tiny, api_key='none')
    chunks = list(client.chat.completions.create(
        model='tiny', messages=[{'role': 'user', 'content': 'Hi'}], max_tokens=12,
        temperature=0, stream=True, stream_options={'include_usage': True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    text = ''.join(c.choices[0].delta.content or '' for c in chunks[:-1] if c.choices)
    assert chunks[-1].usage.completion_tokens >= 1 and text

    r = client.chat.completions.create(
        model='tiny', messages=[{'role': 'user', 'content': 'Hi'}], max_tokens=8,
        temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for e in content:
        assert len(e.top_logprobs) == 3
        assert e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob
        for t in e.top_logprobs:
            assert not t.token.startswith('token_id:'), t
            assert bytes(t.bytes).decode('utf-8', 'replace') == t.token
    assert ''.join(e.token for e in content) == r.choices[0].message.content

    c = client.completions.create(model='tiny', prompt='The cat', max_tokens=6,
                                  temperature=0, logprobs=2)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert ''.join(lp.tokens) == c.choices[0].text
    assert lp.text_offset[0] == 0
    for i, top in enumerate(lp.top_logprobs):
        assert len(top) == 2 and not any(k.startswith('token_id:') for k in top), top
        assert lp.tokens[i] in top  # greedy: the chosen token is the most likely
