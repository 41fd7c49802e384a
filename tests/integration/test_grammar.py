"""Grammar-constrained decoding over real vocabularies (plugins/common tb_grammar*, driven by
tests/tools/tb_grammar_sample): for a few hundred random JSON schemas built from every supported
keyword, random constrained sampling produces texts that all parse (json) and validate
(jsonschema; formats date, uuid and ipv4 by its checker, time and date-time by Python's
ISO 8601 parser), and the fast token mask equals the brute-force mask on the sampled steps it is
compared on.  Also json_object, tool calls, GBNF, and refusals by name.

TB_GRAMMAR_SCHEMAS sets the number of random schemas per vocabulary (default 150; 25 under a
sanitizer build, where the brute-force masks are slow)."""
import datetime
import json
import os
import random
import re
import subprocess

import jsonschema
import pytest

from conftest import BUILD, SHARED, tool

VECTORS = os.path.join(SHARED, 'tokenizer-vectors')
VOCABS = ['ggml-vocab-gpt-2.gguf', 'ggml-vocab-llama-spm.gguf']
N_SCHEMAS = int(os.environ.get('TB_GRAMMAR_SCHEMAS', '25' if 'asan' in BUILD else '150'))
FORMATS = ['date', 'time', 'date-time', 'uuid', 'ipv4']
WORDS = ['id', 'name', 'city', 'é', 'a b', 'x"y', 'kind', 'n', 'tags', 'values', 'ok', 'z']


def scalar(r):
    kind = r.choice(['integer', 'number', 'boolean', 'null', 'string', 'string', 'enum',
                     'const', 'format', 'nullable'])
    if kind == 'string':
        s = {'type': 'string'}
        if r.random() < 0.4:
            s['minLength'] = r.randint(0, 3)
        if r.random() < 0.4:
            s['maxLength'] = s.get('minLength', 0) + r.randint(0, 6)
        return s
    if kind == 'enum':
        pool = ['a', 'b c', 'é', 1, 2.5, None, True, {'k': [1]}, [], 'q"uote']
        return {'enum': r.sample(pool, r.randint(1, 4))}
    if kind == 'const':
        return {'const': r.choice(['fixed', 7, False, None, {'a': 'b'}])}
    if kind == 'format':
        return {'type': 'string', 'format': r.choice(FORMATS)}
    if kind == 'nullable':
        return {'type': [r.choice(['string', 'integer', 'boolean']), 'null']}
    return {'type': kind}


def schema(r, depth):
    if depth <= 0 or r.random() < 0.35:
        return scalar(r)
    kind = r.choice(['object', 'object', 'array', 'anyOf', 'map'])
    if kind == 'object':
        names = r.sample(WORDS, r.randint(1, 4))
        props = {n: schema(r, depth - 1) for n in names}
        s = {'type': 'object', 'properties': props,
             'required': [n for n in names if r.random() < 0.6]}
        if r.random() < 0.7:
            s['additionalProperties'] = False
        if r.random() < 0.3:
            s['description'] = 'annotations are ignored'
        return s
    if kind == 'array':
        s = {'type': 'array', 'items': schema(r, depth - 1)}
        if r.random() < 0.5:
            s['minItems'] = r.randint(0, 2)
        if r.random() < 0.5:
            s['maxItems'] = s.get('minItems', 0) + r.randint(0, 3)
        return s
    if kind == 'map':
        return {'type': 'object', 'additionalProperties': schema(r, depth - 1)}
    return {'anyOf': [schema(r, depth - 1) for _ in range(r.randint(2, 3))]}


def random_schemas(seed, n):
    r = random.Random(seed)
    out = []
    for i in range(n):
        s = schema(r, 3)
        if i % 10 == 0:  # recursion through $defs
            s = {'$defs': {'node': {'type': 'object', 'properties': {
                'v': s, 'next': {'anyOf': [{'type': 'null'}, {'$ref': '#/$defs/node'}]}},
                'required': ['v', 'next'], 'additionalProperties': False}},
                '$ref': '#/$defs/node'}
        out.append(s)
    return out


def sample(vocab, requests, samples=2, check_every=16, max_tokens=400, seed=1):
    path = os.path.join(VECTORS, vocab)
    if not os.path.exists(path):
        pytest.skip('../shared/tokenizer-vectors absent')
    data = ''.join(json.dumps(q) + '\n' for q in requests).encode()
    p = subprocess.run([tool('tb_grammar_sample'), path, '--samples', str(samples),
                        '--check-every', str(check_every), '--max-tokens', str(max_tokens),
                        '--seed', str(seed)],
                       input=data, capture_output=True, timeout=1800)
    assert p.returncode == 0, p.stderr.decode(errors='replace')
    replies = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert len(replies) == len(requests)
    return replies


def format_checker():
    checker = jsonschema.FormatChecker(['date', 'uuid', 'ipv4'])
    checker.checks('time', raises=ValueError)(
        lambda v: not isinstance(v, str) or bool(datetime.time.fromisoformat(v)))
    checker.checks('date-time', raises=ValueError)(
        lambda v: not isinstance(v, str) or bool(datetime.datetime.fromisoformat(v)))
    return checker


def texts(reply):
    assert 'error' not in reply, reply
    return [bytes.fromhex(h).decode('utf-8') for h in reply['outputs']]


@pytest.mark.parametrize('vocab', VOCABS)
def test_random_schemas_always_valid(vocab):
    schemas = random_schemas(VOCABS.index(vocab) + 1, N_SCHEMAS)
    replies = sample(vocab, [{'schema': s} for s in schemas])
    checker = format_checker()
    assert not checker.conforms('25:00:00Z', 'time') and not checker.conforms('x', 'uuid')
    n_texts = checked = unfinished = 0
    for s, reply in zip(schemas, replies):
        jsonschema.Draft202012Validator.check_schema(s)
        validator = jsonschema.Draft202012Validator(s, format_checker=checker)
        assert reply['mismatches'] == 0, (s, reply)
        checked += reply['checked']
        for text, ended in zip(texts(reply), reply['ended']):
            if not ended:  # the sampler ran out of tokens: the text is a prefix
                unfinished += 1
                continue
            value = json.loads(text)
            errors = list(validator.iter_errors(value))
            assert not errors, (json.dumps(s), text, errors[0].message)
            n_texts += 1
    assert checked >= N_SCHEMAS
    # the sampler closes texts early enough that nearly all end with EOS
    assert unfinished <= n_texts // 20, (unfinished, n_texts)
    assert n_texts >= N_SCHEMAS * 2 * 0.95


@pytest.mark.parametrize('vocab', VOCABS)
def test_json_object_tools_and_gbnf(vocab):
    tools = [{'type': 'function', 'function': {
        'name': 'get_weather', 'parameters': {
            'type': 'object', 'properties': {'city': {'type': 'string'},
                                             'unit': {'enum': ['c', 'f']}},
            'required': ['city', 'unit'], 'additionalProperties': False}}},
        {'type': 'function', 'function': {'name': 'now'}}]
    gbnf = 'root ::= "answer: " ( [0-9]+ | "none" ) "."\n'
    replies = sample(vocab, [{'json_object': True}, {'tools': tools}, {'gbnf': gbnf}],
                     samples=8, check_every=4)
    for reply in replies:
        assert reply['mismatches'] == 0 and reply['checked'] > 0
        assert all(reply['ended'])
    for text in texts(replies[0]):
        assert isinstance(json.loads(text), dict)
    params = {t['function']['name']: t['function'].get('parameters', {'type': 'object'})
              for t in tools}
    for text in texts(replies[1]):
        call = json.loads(text)
        assert sorted(call) == ['arguments', 'name'] and call['name'] in params
        jsonschema.validate(call['arguments'], params[call['name']])
    for text in texts(replies[2]):
        assert text.startswith('answer: ') and text.endswith('.')
        body = text[len('answer: '):-1]
        assert body == 'none' or body.isdigit()


def test_refused_by_name():
    replies = sample(VOCABS[0], [
        {'schema': {'type': 'object', 'properties': {'age': {'type': 'integer', 'minimum': 0}}}},
        {'schema': {'type': 'string', 'format': 'email'}},
        {'gbnf': 'root ::= "a"\n  x ::= "b" [c-z'}])
    assert replies[0]['error'] == \
        "unsupported JSON schema keyword 'minimum' at '/properties/age'"
    assert replies[0]['code'] == -95
    assert replies[1]['error'] == "unsupported string format 'email' at '/'"
    assert replies[2]['error'] == '2:13: unterminated character class'
    assert replies[2]['code'] == -22


def test_bench_grammar_reports_figures():
    """bench/grammar prints a median and p99 for each grammar, memo off and on, the accept
    time, and the sampling step with and without the nested schema (no speed is asserted)."""
    exe = os.path.join(BUILD, 'bench', 'bench_grammar')
    path = os.path.join(VECTORS, VOCABS[0])
    if not os.path.exists(path):
        pytest.skip('../shared/tokenizer-vectors absent')
    p = subprocess.run([exe, '-n', '2', '-m', '100', path], capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode(errors='replace')
    out = p.stdout.decode()
    for label in ['nested', 'flat', 'json_object']:
        line = next(x for x in out.splitlines() if x.strip().startswith(label))
        fields = line.split()
        median = float(fields[fields.index('median') + 1])
        p99 = float(fields[fields.index('p99') + 1])
        assert 0 < median <= p99, line
        assert re.search(r'\(\d+ steps, [0-2]/2 samples ended\) memo off$', line), line
    assert out.count("compile ") == 3 and out.count(" memo on") == 3
    assert out.count("accept median") == 3
    m = re.search(r'sampler step median: with the grammar ([\d.]+) us, without ([\d.]+) us', out)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0, out
