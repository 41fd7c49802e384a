"""Tool calls and reasoning through the whole path, with the official `openai` client:
http -> preprocessor -> mock (tokens kind) answering scripted texts, so that the preprocessor's
parsers run on real detokenized streams.  The tokenizer is GPT-2's (byte-level BPE, it spells any
text); the chat templates are written for the test in the Hermes / Qwen style (tool calls in
<tool_call> tags) and the DeepSeek-R1 distill style (the generation prompt opens <think>).

Each mock answers with line (seed mod lines) of its script (docs/mock.md, `script`)."""
import json
import os
import subprocess

import pytest

from conftest import BUILD, SHARED
from serving_util import Turbine, deployment, free_port, http_component, post, wait_ready

GPT2 = os.path.join(SHARED, 'tokenizer-vectors', 'ggml-vocab-gpt-2.gguf')
TURBINE = os.path.join(BUILD, 'bin', 'turbine')

pytestmark = pytest.mark.skipif(not os.path.isfile(GPT2),
                                reason='skipped: ../shared/tokenizer-vectors is absent')

HERMES_TEMPLATE = r"""
{%- if tools %}<|im_start|>system
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
For each function call, return a json object within <tool_call></tool_call> tags.<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.tool_calls %}<|im_start|>assistant
{%- for tc in message.tool_calls %}
<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

R1_TEMPLATE = r"""
{%- for message in messages %}
{%- if message.role == 'user' %}<｜User｜>{{ message.content }}
{%- elif message.role == 'assistant' %}<｜Assistant｜>{{ message.content.split('</think>')[-1] }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}<｜Assistant｜><think>
{% endif %}"""

CALL = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n'
        '</tool_call>')
HERMES_ANSWERS = [
    'Let me look that up.\n' + CALL,                                            # 0: a call
    'It is sunny in Paris today.',                                               # 1: text
    CALL + '\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": }}\n</tool_call>',  # 3: bad
]
R1_ANSWERS = [
    'The user asks for 2+2. Two plus two is four.\n</think>\n\nThe answer is 4.',
    'Let me think about this very carefully, step by step, considering every case.',
]
LLAMA_ANSWERS = ['{"name": "get_time", "parameters": {"zone": "UTC"}}']

TOOLS = [
    {'type': 'function', 'function': {
        'name': 'get_weather', 'description': 'the weather in a city',
        'parameters': {'type': 'object', 'properties': {
            'city': {'type': 'string'}, 'unit': {'type': 'string', 'enum': ['c', 'f']}},
            'required': ['city']}}},
    {'type': 'function', 'function': {
        'name': 'get_time', 'parameters': {'type': 'object', 'properties': {
            'zone': {'type': 'string'}}}}},
]
USER = [{'role': 'user', 'content': 'What is the weather in Paris?'}]


def ids_of(text):
    out = subprocess.run([TURBINE, 'tokenize', '--model', GPT2, '--no-special', '--text', text],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp('tools')
    files = {}
    for name, text in (('hermes.jinja', HERMES_TEMPLATE), ('r1.jinja', R1_TEMPLATE)):
        files[name] = str(d / name)
        with open(files[name], 'w') as f:
            f.write(text)
    for name, answers in (('hermes', HERMES_ANSWERS), ('r1', R1_ANSWERS),
                          ('llama', LLAMA_ANSWERS)):
        files[name] = str(d / (name + '.script'))
        with open(files[name], 'w') as f:
            f.write(''.join(ids_of(a) + '\n' for a in answers))
    port = free_port()
    comps = [http_component(port)]
    for model, tmpl, script, extra in (('hermes', 'hermes.jinja', 'hermes', {}),
                                       ('r1', 'r1.jinja', 'r1', {}),
                                       ('llama', 'hermes.jinja', 'llama',
                                        {'tool_call_parser': 'llama3_json'})):
        pre = {'served_model_name': model, 'model': GPT2, 'chat_template': files[tmpl]}
        pre.update(extra)
        comps.append(('pre-' + model, 'preprocessor', 1, pre))
        comps.append(('engine-' + model, 'mock', 1,
                      {'served_model_name': model, 'kind': 'tokens', 'script': files[script],
                       'ttft': '1ms', 'itl': '2ms', 'context_length': 4096}))
    t = Turbine(d, deployment(port, comps))
    try:
        wait_ready(port, timeout=30)
        yield port, t
    finally:
        t.stop()


@pytest.fixture(scope='module')
def client(server):
    import openai
    port, _ = server
    return openai.OpenAI(base_url='http://127.0.0.1:%d/v1' % port, api_key='none')


def test_parsers_chosen_from_the_templates(server):
    _, t = server
    log = t.log()
    assert 'tool calls: hermes; reasoning: none' in log
    assert 'tool calls: none; reasoning: think' in log
    assert 'tool calls: llama3_json (configured)' in log


def test_auto_returns_a_call(client):
    r = client.chat.completions.create(model='hermes', messages=USER, tools=TOOLS, seed=0)
    choice = r.choices[0]
    assert choice.finish_reason == 'tool_calls'
    assert choice.message.content == 'Let me look that up.\n'
    calls = choice.message.tool_calls
    assert len(calls) == 1
    assert calls[0].type == 'function'
    assert calls[0].id.startswith('call_') and len(calls[0].id) == 29
    assert calls[0].function.name == 'get_weather'
    assert json.loads(calls[0].function.arguments) == {'city': 'Paris', 'unit': 'c'}


def test_auto_text_answer_has_no_calls(client):
    r = client.chat.completions.create(model='hermes', messages=USER, tools=TOOLS, seed=1)
    assert r.choices[0].finish_reason == 'stop'
    assert r.choices[0].message.content == 'It is sunny in Paris today.'
    assert not r.choices[0].message.tool_calls


def test_parallel_calls(client):
    r = client.chat.completions.create(model='hermes', messages=USER, tools=TOOLS, seed=2,
                                       parallel_tool_calls=True)
    calls = r.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ['get_weather', 'get_time']
    assert json.loads(calls[1].function.arguments) == {'zone': 'CET'}
    assert calls[0].id != calls[1].id
    assert r.choices[0].message.content is None


def test_unparsable_call_is_content(client):
    r = client.chat.completions.create(model='hermes', messages=USER, tools=TOOLS, seed=3)
    assert r.choices[0].finish_reason == 'stop'
    assert r.choices[0].message.content == HERMES_ANSWERS[3]
    assert not r.choices[0].message.tool_calls


def test_tool_choice_none_leaves_text_alone(client):
    r = client.chat.completions.create(model='hermes', messages=USER, tools=TOOLS, seed=0,
                                       tool_choice='none')
    assert r.choices[0].finish_reason == 'stop'
    assert r.choices[0].message.content == HERMES_ANSWERS[0]
    assert not r.choices[0].message.tool_calls
    # and the template was not given the tools
    assert r.usage.prompt_tokens < client.chat.completions.create(
        model='hermes', messages=USER, tools=TOOLS, seed=1).usage.prompt_tokens


def test_tool_choice_required_and_named_refused_by_the_mock(client):
    """The mock makes its text up: a forced call's grammar is refused, never ignored."""
    import openai
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model='hermes', messages=USER, tools=TOOLS, seed=0,
                                       tool_choice='required')
    assert 'cannot follow a grammar' in str(e.value)


@pytest.fixture(scope='module')
def real_engine(tmp_path_factory):
    """The CPU engine on a random-weight Llama model (32k SentencePiece vocabulary with byte
    tokens: it can spell any call) behind the Hermes template: its free text is noise, so every
    well-formed call below is the grammar's doing."""
    import sys
    from conftest import ROOT
    spm = os.path.join(SHARED, 'tokenizer-vectors', 'ggml-vocab-llama-spm.gguf')
    if not os.path.exists(spm):
        pytest.skip('../shared/tokenizer-vectors absent')
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    import tb_make_model
    d = tmp_path_factory.mktemp('tools-real')
    path = str(d / 'rand')
    assert tb_make_model.main(['--out', path, '--format', 'hf', '--dtype', 'f32', '--layers', '1',
                               '--hidden', '64', '--heads', '4', '--kv-heads', '2',
                               '--intermediate', '96', '--vocab', '32000', '--tied',
                               '--context', '4096']) == 0
    tmpl = str(d / 'hermes.jinja')
    with open(tmpl, 'w') as f:
        f.write(HERMES_TEMPLATE)
    port = free_port()
    comps = [http_component(port),
             ('pre', 'preprocessor', 1, {'served_model_name': 'rand', 'model': path,
                                         'chat_template': tmpl, 'tool_call_parser': 'hermes'}),
             ('engine', 'engine_cpu', 1, {'served_model_name': 'rand', 'model': path,
                                          'kv_cache': '64MiB', 'threads': 2})]
    t = Turbine(d, deployment(port, comps))
    try:
        wait_ready(port, timeout=60)
        import openai
        yield openai.OpenAI(base_url='http://127.0.0.1:%d/v1' % port, api_key='none')
    finally:
        t.stop()


# The same tools with bounded strings: a random-weight model writes a free string until
# max_tokens, and a call cut by max_tokens is not a call (the grammar has no say in its length).
BOUNDED_TOOLS = json.loads(json.dumps(TOOLS).replace('{"type": "string"}',
                                                     '{"type": "string", "maxLength": 12}'))


def test_tool_choice_required_and_named_always_give_a_valid_call(real_engine):
    import jsonschema
    schemas = {t['function']['name']: t['function']['parameters'] for t in BOUNDED_TOOLS}
    assert schemas['get_time']['properties']['zone']['maxLength'] == 12
    for seed in range(6):
        for choice in ('required', {'type': 'function', 'function': {'name': 'get_weather'}},
                       {'type': 'function', 'function': {'name': 'get_time'}}):
            r = real_engine.chat.completions.create(model='rand', messages=USER,
                                                    tools=BOUNDED_TOOLS,
                                                    seed=seed, temperature=1.0, max_tokens=600,
                                                    tool_choice=choice)
            c = r.choices[0]
            assert c.finish_reason == 'tool_calls', (seed, choice, c)
            assert c.message.tool_calls, (seed, choice, c)
            for call in c.message.tool_calls:
                name = call.function.name
                if isinstance(choice, dict):
                    assert name == choice['function']['name']
                jsonschema.validate(json.loads(call.function.arguments), schemas[name])


def test_forced_call_with_a_schema_the_grammar_cannot_express(client):
    import openai
    tools = [{'type': 'function', 'function': {'name': 'f', 'parameters': {
        'type': 'object', 'properties': {'x': {'type': 'string', 'pattern': '^a+$'}}}}}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model='hermes', messages=USER, tools=tools,
                                       tool_choice='required')
    assert 'pattern' in str(e.value) and 'tools[0].function.parameters' in str(e.value)


def test_malformed_tools_are_400_naming_the_field(server):
    port, _ = server
    cases = [
        ({'tools': [{'type': 'function', 'function': {'description': 'no name'}}]},
         'tools[0].function.name'),
        ({'tools': [{'type': 'function', 'function': {'name': 'has space'}}]},
         'tools[0].function.name'),
        ({'tools': [{'type': 'retrieval'}]}, 'tools[0].type'),
        ({'tools': TOOLS, 'tool_choice': {'type': 'function', 'function': {'name': 'nope'}}},
         'tool_choice.function.name'),
        ({'tool_choice': 'required'}, 'tool_choice'),
        ({'tools': TOOLS, 'parallel_tool_calls': 'yes'}, 'parallel_tool_calls'),
    ]
    for extra, param in cases:
        body = {'model': 'hermes', 'messages': USER}
        body.update(extra)
        r = post(port, '/v1/chat/completions', body)
        assert r.status == 400, (extra, r.body)
        assert r.json()['error']['param'] == param, (extra, r.body)


def test_streamed_call_deltas(client):
    stream = client.chat.completions.create(model='hermes', messages=USER, tools=TOOLS, seed=2,
                                            stream=True)
    content, calls, finish = '', {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        ch = chunk.choices[0]
        d = ch.delta
        if d.content:
            assert '<tool_call>' not in d.content and '{' not in d.content
            content += d.content
        for tc in d.tool_calls or []:
            if tc.id:
                assert tc.index not in calls and tc.function.name
                calls[tc.index] = {'id': tc.id, 'name': tc.function.name, 'args': '', 'pieces': 0}
            calls[tc.index]['args'] += tc.function.arguments or ''
            calls[tc.index]['pieces'] += 1
        finish = ch.finish_reason or finish
    assert finish == 'tool_calls'
    assert content == ''
    assert [calls[i]['name'] for i in sorted(calls)] == ['get_weather', 'get_time']
    assert json.loads(calls[0]['args']) == {'city': 'Paris', 'unit': 'c'}
    assert json.loads(calls[1]['args']) == {'zone': 'CET'}


def test_streamed_text_then_call(client):
    stream = client.chat.completions.create(model='hermes', messages=USER, tools=TOOLS, seed=0,
                                            stream=True)
    content, args, names = '', '', []
    for chunk in stream:
        d = chunk.choices[0].delta
        content += d.content or ''
        for tc in d.tool_calls or []:
            if tc.function.name:
                names.append(tc.function.name)
            args += tc.function.arguments or ''
    assert content == 'Let me look that up.\n'
    assert names == ['get_weather']
    assert json.loads(args) == {'city': 'Paris', 'unit': 'c'}


def test_tool_round_trip(client, server):
    port, _ = server
    messages = USER + [
        {'role': 'assistant', 'content': None, 'tool_calls': [
            {'id': 'call_abc', 'type': 'function',
             'function': {'name': 'get_weather', 'arguments': '{"city": "Paris"}'}}]},
        {'role': 'tool', 'tool_call_id': 'call_abc', 'content': '21 degrees, sunny'},
    ]
    r = client.chat.completions.create(model='hermes', messages=messages, tools=TOOLS, seed=1)
    assert r.choices[0].message.content == 'It is sunny in Paris today.'
    # the model's own template rendered the call (arguments as an object) and the result
    tok = post(port, '/tokenize', {'model': 'hermes', 'messages': messages})
    assert tok.status == 200, tok.body
    text = post(port, '/detokenize', {'model': 'hermes', 'tokens': tok.json()['tokens']})
    prompt = text.json()['prompt']
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    assert '<tool_response>\n21 degrees, sunny\n</tool_response>' in prompt


def test_configured_llama3_parser(client):
    r = client.chat.completions.create(model='llama', messages=USER, tools=TOOLS)
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == 'tool_calls'
    assert calls[0].function.name == 'get_time'
    assert json.loads(calls[0].function.arguments) == {'zone': 'UTC'}


def test_reasoning_content(client):
    r = client.chat.completions.create(model='r1', messages=[{'role': 'user', 'content': '2+2?'}],
                                       seed=0)
    msg = r.choices[0].message
    extra = msg.model_extra
    assert extra['reasoning_content'] == 'The user asks for 2+2. Two plus two is four.\n'
    assert extra['reasoning'] == extra['reasoning_content']
    assert msg.content == 'The answer is 4.'
    details = r.usage.completion_tokens_details
    assert 0 < details.reasoning_tokens < r.usage.completion_tokens


def test_reasoning_streamed(client):
    stream = client.chat.completions.create(model='r1', seed=0, stream=True,
                                            messages=[{'role': 'user', 'content': '2+2?'}],
                                            stream_options={'include_usage': True})
    reasoning, content, order, usage = '', '', [], None
    for chunk in stream:
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        r = (d.model_extra or {}).get('reasoning_content')
        if r:
            assert d.model_extra['reasoning'] == r
            reasoning += r
            order.append('r')
        if d.content:
            content += d.content
            order.append('c')
    assert reasoning == 'The user asks for 2+2. Two plus two is four.\n'
    assert content == 'The answer is 4.'
    assert order == sorted(order, reverse=True)  # all reasoning before any content
    assert usage.completion_tokens_details.reasoning_tokens > 0


def test_reasoning_cut_by_max_tokens(client):
    r = client.chat.completions.create(model='r1', seed=1, max_tokens=6,
                                       messages=[{'role': 'user', 'content': 'hard question'}])
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == 'length'
    assert msg.model_extra['reasoning_content'].startswith('Let me think')
    assert not msg.content
    assert r.usage.completion_tokens_details.reasoning_tokens == 6


def test_check_refuses_an_unknown_parser(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text(deployment(8000, [('pre', 'preprocessor', 1, {
        'served_model_name': 'x', 'model': GPT2, 'tool_call_parser': 'pythonic'})]))
    out = subprocess.run([TURBINE, 'check', str(path)], capture_output=True, text=True)
    assert out.returncode != 0
    assert 'tool_call_parser' in out.stdout + out.stderr
    assert 'hermes' in out.stdout + out.stderr
