"""Turbine's Jinja interpreter against jinja2, the engine Hugging Face renders chat templates
with: the published templates of nine model families over varied conversations, a catalogue of
language cases, and the fallback for a model folder without a template.  Every comparison is
byte equality of the rendered prompt, or both sides raising."""
import glob
import json
import os
import subprocess
from datetime import datetime

import pytest

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

import exitcheck
from conftest import ROOT, SHARED, run_tool as run_built, tool

# jinja2 warns about the unknown escape "\d" kept verbatim by one language case
pytestmark = pytest.mark.filterwarnings('ignore:invalid escape sequence:DeprecationWarning')

TEMPLATES = sorted(glob.glob(os.path.join(ROOT, 'tests', 'data', 'templates', '*.json')))
TOOL = tool('tb_render_template')


# --------------------------------------------------------------------------- reference

def hf_environment():
    """jinja2 configured as transformers' _compile_jinja_template does."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    class GenerationBlock(jinja2.ext.Extension):
        """{% generation %} ... {% endgeneration %} renders its body (transformers' assistant
        tracker, whose index bookkeeping does not change the output)."""
        tags = {'generation'}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(['name:endgeneration'], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method('_body'), [], [], body).set_lineno(
                lineno)

        def _body(self, caller):
            return caller()

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters['tojson'] = tojson
    env.globals['raise_exception'] = raise_exception
    env.globals['strftime_now'] = strftime_now
    return env


ENV = hf_environment()


def flatten(messages):
    """Our documented normalisation: text parts joined with a newline."""
    out = []
    for m in messages:
        m = dict(m)
        if isinstance(m.get('content'), list):
            m['content'] = '\n'.join(p['text'] for p in m['content'])
        out.append(m)
    return out


def reference_chat(template, ctx):
    """apply_chat_template's render call: messages, tools, documents, add_generation_prompt,
    then the special tokens and extra keyword arguments."""
    kwargs = {k: v for k, v in ctx.items()
              if k not in ('messages', 'add_generation_prompt', 'tools', 'documents')
              and v is not None}
    try:
        return 'ok', ENV.from_string(template).render(
            messages=flatten(ctx['messages']), tools=ctx.get('tools'), documents=None,
            add_generation_prompt=ctx.get('add_generation_prompt', False), **kwargs)
    except jinja2.exceptions.TemplateError as ex:
        return 'err', str(ex)
    except (TypeError, ValueError, ArithmeticError) as ex:  # a template error all the same
        return 'err', '%s: %s' % (type(ex).__name__, ex)


def reference_raw(template, ctx):
    try:
        return 'ok', ENV.from_string(template).render(**ctx)
    except Exception as ex:  # jinja2 raises TypeError, ZeroDivisionError, ... as well
        return 'err', '%s: %s' % (type(ex).__name__, ex)


# --------------------------------------------------------------------------- ours

def run_tool(args, ctx, tmp_path, template_text=None):
    if not os.access(TOOL, os.X_OK):
        pytest.fail('%s is not built (scons -Q -j2)' % TOOL)
    cpath = tmp_path / 'ctx.json'
    cpath.write_text(json.dumps({k: v for k, v in ctx.items() if v is not None}),
                     encoding='utf-8')
    if template_text is not None:
        tpath = tmp_path / 'template.jinja'
        tpath.write_bytes(template_text.encode('utf-8'))
        args = args + [str(tpath)]
    p = subprocess.run([TOOL] + args + [str(cpath)], capture_output=True, timeout=60)
    err = p.stderr.decode('utf-8', 'replace')
    # a render (0) or a refusal (exactly 1); a crash or a sanitizer report is neither
    exitcheck.check_exit(p.returncode, err, 0 if p.returncode == 0 else 1, 'tb_render_template')
    if p.returncode == 0:
        return 'ok', p.stdout.decode('utf-8')
    msg = err.strip()
    assert msg, 'an error must say what is wrong'
    return 'err', msg


def fallback_template():
    return run_built('tb_render_template', ['--print-fallback'], text=True).stdout


def assert_same(ours, ref, what):
    if ref[0] == 'err':
        assert ours[0] == 'err', '%s: jinja2 raised %r but we rendered %r' % (what, ref[1],
                                                                              ours[1])
    else:
        assert ours == ref, '%s: differs from jinja2' % what


# --------------------------------------------------------------------------- conversations

def msg(role, content, **kw):
    d = {'role': role, 'content': content}
    d.update(kw)
    return d


LONG = [msg('system', 'Be brief.')] + [
    msg('user' if i % 2 == 0 else 'assistant', 'turn %d: %s' % (i, 'word ' * (i % 7)))
    for i in range(40)] + [msg('user', 'last')]

CONVERSATIONS = {
    'single_user': [msg('user', 'Hello!')],
    'system_first': [msg('system', 'You are a helpful assistant.'), msg('user', 'Hi')],
    'multi_turn': [msg('system', 'You are terse.'), msg('user', 'What is 2+2?'),
                   msg('assistant', '4'), msg('user', 'And 3+3?')],
    'ends_with_assistant': [msg('user', 'Hi'), msg('assistant', 'Hello, how can I help?'),
                            msg('user', 'Tell a joke'), msg('assistant', 'No.')],
    'unicode': [msg('system', 'Réponds en français 🇫🇷'),
                msg('user', '你好，世界 — «ça va?» עברית 👩‍👩‍👧 e\u0301'),
                msg('assistant', 'Très bien ✓'), msg('user', 'Ω≈ç√∫ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢')],
    'unicode_whitespace': [msg('user', '\u3000\xa0 padded \u2003\n\t'),
                           msg('assistant', '\u2028 line sep \u2029'),
                           msg('user', '\x1c\x1d\x1e\x1f\x85 odd spaces \x0b\x0c')],
    'empty_content': [msg('system', ''), msg('user', ''), msg('assistant', ''),
                      msg('user', ' ')],
    'whitespace_edges': [msg('user', '  leading and trailing  \n\n'),
                         msg('assistant', '\n\tindented\n'), msg('user', 'x\r\ny\rz')],
    'template_like_text': [msg('user', "{{ raise_exception('no') }} {% if %} {# #} </s> <s>"),
                           msg('assistant', '<|im_end|><|eot_id|>[INST]'),
                           msg('user', "quotes ' \" \\ backslash \\n")],
    'content_parts': [msg('system', [{'type': 'text', 'text': 'sys part'}]),
                      msg('user', [{'type': 'text', 'text': 'first'},
                                   {'type': 'text', 'text': 'second'}])],
    'long': LONG,
    # conversations that make some templates raise
    'two_users': [msg('user', 'a'), msg('user', 'b')],
    'assistant_first': [msg('assistant', 'I start'), msg('user', 'ok')],
    'system_in_middle': [msg('user', 'a'), msg('system', 'late system'), msg('user', 'b')],
    'tool_role': [msg('user', 'weather?'), msg('assistant', 'calling'),
                  msg('tool', '{"temp": 21}')],
}

# The conversations that make some templates raise (Llama 2's and Mistral's alternation checks).
RAISING = ('two_users', 'assistant_first', 'system_in_middle', 'tool_role')

TOKENS = {
    'model': None,  # the template file's own bos/eos
    'custom': ('<BOS>', '<EOS>'),
    'empty': ('', ''),
    'absent': (None, None),
}


def template_ids():
    return [os.path.splitext(os.path.basename(p))[0] for p in TEMPLATES]


# Each published family, and the text its template puts around a user turn (from the model
# cards, independent of jinja2): our rendering must carry it and the user's words.
FAMILIES = {'Llama-2': '[INST]', 'Llama-3': '<|start_header_id|>user<|end_header_id|>',
            'Qwen2-': '<|im_start|>user', 'Qwen2.5': '<|im_start|>user',
            'Qwen3': '<|im_start|>user', 'Mistral': '[INST]',
            'zephyr': '<|user|>', 'Phi-3-': '<|user|>', 'Phi-3.5': '<|user|>',
            'gemma-2': '<start_of_turn>user', 'gemma-3': '<start_of_turn>user'}
# Templates that refuse any system turn (raise_exception('System role not supported')).
NO_SYSTEM = ('gemma-2',)


def refuses(tpath, messages):
    """Whether a well-formed conversation is one the template refuses by design."""
    return any(f in os.path.basename(tpath) for f in NO_SYSTEM) and \
        any(m['role'] == 'system' for m in messages)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_published_template_renders_its_family_format(family, tmp_path):
    paths = [p for p in TEMPLATES if family in os.path.basename(p)]
    assert len(paths) == 1, 'one published template for %s in tests/data/templates' % family
    data = json.load(open(paths[0], encoding='utf-8'))
    conv = CONVERSATIONS['multi_turn']
    if refuses(paths[0], conv):
        conv = conv[1:]
    ctx = {'messages': conv, 'add_generation_prompt': True,
           'bos_token': data['bos_token'], 'eos_token': data['eos_token']}
    ours = run_tool(['--chat', paths[0]], ctx, tmp_path)
    assert ours[0] == 'ok', ours[1]
    assert FAMILIES[family] in ours[1], ours[1]
    for m in conv:
        assert m['content'] in ours[1], ours[1]


@pytest.mark.parametrize('conv', sorted(CONVERSATIONS))
@pytest.mark.parametrize('tpath', TEMPLATES, ids=template_ids())
def test_published_template_matches_jinja2(tpath, conv, tmp_path):
    data = json.load(open(tpath, encoding='utf-8'))
    template = data['chat_template']
    for tok_name, toks in TOKENS.items():
        bos, eos = (data['bos_token'], data['eos_token']) if toks is None else toks
        for agp in (True, False):
            ctx = {'messages': CONVERSATIONS[conv], 'add_generation_prompt': agp,
                   'bos_token': bos, 'eos_token': eos}
            ours = run_tool(['--chat', tpath], ctx, tmp_path)
            ref = reference_chat(template, ctx)
            what = '%s/%s/tokens=%s/agp=%s' % (os.path.basename(tpath), conv, tok_name, agp)
            assert_same(ours, ref, what)
            if conv not in RAISING and tok_name != 'absent' and \
                    not refuses(tpath, CONVERSATIONS[conv]):
                # a well-formed conversation with string tokens renders in every published
                # template: both sides raising here would compare nothing
                assert ours[0] == 'ok', '%s: refused: %s' % (what, ours[1])


def test_raising_conversations_raise_in_both(tmp_path):
    """The alternation checks of Llama 2 and Mistral fire, with the template's message."""
    seen = 0
    for tpath in TEMPLATES:
        data = json.load(open(tpath, encoding='utf-8'))
        for conv in RAISING:
            ctx = {'messages': CONVERSATIONS[conv], 'add_generation_prompt': True,
                   'bos_token': '<s>', 'eos_token': '</s>'}
            ref = reference_chat(data['chat_template'], ctx)
            if ref[0] != 'err':
                continue
            ours = run_tool(['--chat', tpath], ctx, tmp_path)
            assert ours[0] == 'err'
            assert ref[1] in ours[1], 'our error must carry the template message'
            assert 'raise_exception' in ours[1]
            seen += 1
    assert seen >= 6, 'expected Llama 2 and Mistral to raise on several conversations'


TOOLS = [
    {'type': 'function', 'function': {
        'name': 'get_weather', 'description': 'Current weather in a city',
        'parameters': {'type': 'object', 'properties': {
            'city': {'type': 'string', 'description': 'City name, e.g. Zürich'},
            'unit': {'type': 'string', 'enum': ['celsius', 'fahrenheit']}},
            'required': ['city']}}},
    {'type': 'function', 'function': {'name': 'now', 'description': 'Current time',
                                      'parameters': {'type': 'object', 'properties': {}}}},
]

TOOL_CONVERSATIONS = {
    'call_and_results': [
        msg('system', 'Use tools when needed.'), msg('user', 'Weather in Zürich and the time?'),
        {'role': 'assistant', 'content': None, 'tool_calls': [
            {'id': 'call_1', 'type': 'function',
             'function': {'name': 'get_weather', 'arguments': {'city': 'Zürich'}}},
            {'id': 'call_2', 'type': 'function', 'function': {'name': 'now', 'arguments': {}}}]},
        msg('tool', '{"temp": 21.5, "sky": "clear"}', tool_call_id='call_1'),
        msg('tool', '12:00', tool_call_id='call_2'),
        msg('assistant', 'It is 21.5 °C and noon.'), msg('user', 'Thanks!')],
    'openai_string_arguments': [
        msg('user', 'Time?'),
        {'role': 'assistant', 'content': 'Let me check.', 'tool_calls': [
            {'id': 'c', 'type': 'function',
             'function': {'name': 'now', 'arguments': '{"tz": "UTC"}'}}]},
        msg('tool', 'noon')],
}


@pytest.mark.parametrize('conv', sorted(TOOL_CONVERSATIONS))
@pytest.mark.parametrize('tpath', TEMPLATES, ids=template_ids())
def test_tool_conversations_match_jinja2(tpath, conv, tmp_path):
    """Tools and tool calls: Qwen2.5 renders them; the others render or raise like jinja2."""
    data = json.load(open(tpath, encoding='utf-8'))
    for tools in (TOOLS, None):
        for agp in (True, False):
            ctx = {'messages': TOOL_CONVERSATIONS[conv], 'add_generation_prompt': agp,
                   'bos_token': data['bos_token'], 'eos_token': data['eos_token'],
                   'tools': tools}
            ours = run_tool(['--chat', tpath], ctx, tmp_path)
            ref = reference_chat(data['chat_template'], ctx)
            assert_same(ours, ref, '%s/%s/tools=%s/agp=%s' % (os.path.basename(tpath), conv,
                                                              bool(tools), agp))
            if 'Qwen2.5' in tpath and tools:
                assert '"name": "get_weather"' in ours[1] and '<tool_call>' in ours[1]


def test_tools_variable_is_null_like_hugging_face(tmp_path):
    template = ('{% if tools is defined %}D{% endif %}{% if tools is none %}N{% endif %}'
                '{% if documents is none %}d{% endif %}'
                '{% for t in tools or [] %}[{{ t.function.name }}|{{ t|tojson }}]{% endfor %}')
    base = {'messages': [msg('user', 'x')], 'add_generation_prompt': False}
    assert run_tool(['--chat'], base, tmp_path, template) == reference_chat(template, base)
    with_tools = dict(base, tools=[{'type': 'function', 'function': {
        'name': 'get_weather', 'parameters': {'type': 'object', 'properties': {
            'city': {'type': 'string', 'description': 'Zürich'}}}}}])
    ours = run_tool(['--chat'], with_tools, tmp_path, template)
    assert ours == reference_chat(template, with_tools)
    assert 'get_weather' in ours[1]


@pytest.mark.parametrize('bad,why', [
    ({'messages': []}, 'non-empty'),
    ({'messages': [{'content': 'x'}]}, 'role'),
    ({'messages': [{'role': 'user', 'content': 5}]}, 'content'),
    ({'messages': [{'role': 'user', 'content': [{'type': 'image_url', 'image_url': {}}]}]},
     'image_url'),
    ({'messages': [{'role': 'user', 'content': None}]}, 'content'),
    ({'messages': ['not an object']}, 'object'),
])
def test_invalid_messages_are_rejected_with_a_reason(bad, why, tmp_path):
    ours = run_tool(['--chat', TEMPLATES[0]], bad, tmp_path)
    assert ours[0] == 'err' and why in ours[1]


def test_assistant_tool_calls_without_content_are_accepted(tmp_path):
    ctx = {'messages': [msg('user', 'hi'),
                        {'role': 'assistant', 'content': None, 'tool_calls': [
                            {'id': 'call_1', 'type': 'function',
                             'function': {'name': 'f', 'arguments': '{}'}}]}],
           'add_generation_prompt': True}
    ours = run_tool(['--chat', '-'], ctx, tmp_path)
    fallback = fallback_template()
    assert ours == reference_chat(fallback, ctx)
    assert '<|im_start|>assistant\n<|im_end|>\n' in ours[1]


# --------------------------------------------------------------------------- model folders

def test_tinystories_folder_uses_the_fallback(tmp_path):
    model = os.path.join(SHARED, 'models', 'tinystories-656k')
    if not os.path.isdir(model):
        pytest.skip('%s absent' % model)
    cfg = json.load(open(os.path.join(model, 'tokenizer_config.json'), encoding='utf-8'))
    assert 'chat_template' not in cfg
    fallback = fallback_template()
    for conv in ('single_user', 'multi_turn', 'unicode', 'content_parts'):
        for agp in (True, False):
            ctx = {'messages': CONVERSATIONS[conv], 'add_generation_prompt': agp}
            ours = run_tool(['--chat-dir', model], ctx, tmp_path)
            ref = reference_chat(fallback, dict(ctx, bos_token=cfg['bos_token'],
                                                eos_token=cfg['eos_token']))
            assert ours == ref
            assert ours[1].startswith('<|im_start|>')


def test_model_folder_template_and_tokens(tmp_path):
    data = json.load(open(TEMPLATES[0], encoding='utf-8'))
    model = tmp_path / 'model'
    model.mkdir()
    cfg = {'bos_token': {'content': '<B>', 'lstrip': False}, 'eos_token': '<E>',
           'chat_template': [{'name': 'tool_use', 'template': 'TOOLS'},
                             {'name': 'default', 'template': data['chat_template']}]}
    (model / 'tokenizer_config.json').write_text(json.dumps(cfg), encoding='utf-8')
    ctx = {'messages': CONVERSATIONS['multi_turn'], 'add_generation_prompt': True}
    ours = run_tool(['--chat-dir', str(model)], ctx, tmp_path)
    assert ours == reference_chat(data['chat_template'],
                                  dict(ctx, bos_token='<B>', eos_token='<E>'))
    # a chat_template.jinja file takes precedence over tokenizer_config.json
    (model / 'chat_template.jinja').write_text('{{ bos_token }}{{ messages|length }}{{ eos_token }}',
                                               encoding='utf-8')
    assert run_tool(['--chat-dir', str(model)], ctx, tmp_path) == ('ok', '<B>4<E>')


def test_bad_template_is_an_error_naming_line_and_column(tmp_path):
    ctx = {'messages': [msg('user', 'x')]}
    ours = run_tool(['--chat'], ctx, tmp_path, 'line one\n{% for m in messages %}{{ m.role }')
    assert ours[0] == 'err' and 'does not parse' in ours[1] and '2:' in ours[1]


# --------------------------------------------------------------------------- language

LANG_CTX = {
    'messages': [{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': ' Hi é '}],
    'd': {'a': 1, 'b': [1, 2], 'c': {'x': None, 'y': True, 'z': 2.5}},
    'n': 3, 'f': 1.5, 's': 'Hello World', 'e': '', 'u': 'ünïcödé ß', 'big': 2 ** 40,
}

LANG_CASES = [
    'Hello {{ s }}!',
    '{{ n + 1 }} {{ n * f }} {{ n / 2 }} {{ n // 2 }} {{ n % 2 }} {{ n ** 2 }} {{ -n }} {{ +f }}',
    '{% for m in messages %}{{ loop.index }}:{{ m.role }}={{ m["content"] }};{% endfor %}',
    '{% for m in messages %}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %}'
    '{{ loop.index0 }}/{{ loop.length }}/{{ loop.revindex }}/{{ loop.revindex0 }}{% endfor %}',
    '{% for m in messages %}{% if not loop.first %}{{ loop.previtem.role }}{% endif %}>'
    '{% if not loop.last %}{{ loop.nextitem.role }}{% endif %}{{ loop.previtem }}'
    '{{ loop.cycle("a", "b") }}{% endfor %}',
    '  {% if true %}\n  x\n  {% endif %}\n  y',
    '{%- if true -%}  a  {%- endif -%}  b',
    'a {#- c -#} b {# c #}\nc',
    '{{ "\\x41\\u00e9\\n\\d\\t\\\\" }}',
    "{{ messages[1:] }} {{ 'héllo'[1:3] }} {{ 'héllo'[-1] }} {{ [1,2,3][::-1] }} {{ [1][5] }}|",
    '{{ d|tojson }} {{ d|tojson(indent=2) }} {{ messages|tojson }} {{ u|tojson }}',
    '{{ d|tojson(sort_keys=true) }} {{ d|tojson(separators=(",", ":")) }} '
    '{{ u|tojson(ensure_ascii=true) }} {{ "\\u0001\\x7f"|tojson }}',
    '{% set ns = namespace(a=1, l=[]) %}{% for i in range(3) %}{% set ns.a = ns.a + i %}'
    '{% set ns.l = ns.l + [i] %}{% endfor %}{{ ns.a }} {{ ns.l }} {{ ns }}',
    '{{ s.strip() }}|{{ messages[1].content.strip() }}|{{ messages[1].content|trim }}|'
    '{{ s.upper() }}{{ s.lower() }}{{ s.title() }}{{ u.upper() }}{{ u|title }}',
    "{{ s.split() }} {{ s.split('o') }} {{ s.startswith('He') }} {{ s.endswith(('x', 'd')) }} "
    "{{ s.replace('l', 'L') }} {{ s.replace('', '-') }} {{ s.find('World') }} {{ s.count('l') }}",
    "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} "
    "{{ ' a  b c '.split(none, 1) }} {{ 'xxaxx'.strip('x') }} {{ '-'.join(['a', 'b']) }}",
    '{{ x is defined }} {{ s is string }} {{ n is number }} {{ d is mapping }} {{ none is none }}'
    ' {{ n is odd }} {{ n is even }} {{ n is divisibleby(3) }} {{ s is not none }} '
    '{{ d.b is iterable }} {{ f is float }} {{ n is integer }} {{ true is boolean }}',
    "{{ 1 if false }}|{{ 'a' if true else 'b' }}|{{ 'x' in 'axb' }} {{ 1 in [1] }} "
    "{{ 'k' in {'k': 1} }} {{ 'a' not in 'b' }} {{ 'a' in zz }}",
    '{{ [3,1,2]|sort|list }} {{ ["b","A","a"]|sort }} {{ ["b","A","a"]|sort(case_sensitive=true) }}'
    ' {{ [1,2,3]|reverse|list }} {{ "abc"|reverse }} {{ [{"k": 2}, {"k": 1}]|sort(attribute="k") }}'
    ' {{ [3, 1, 2]|sort(reverse=true) }}',
    '{{ [{"a":1},{"a":2}]|map(attribute="a")|list }} '
    '{{ messages|selectattr("role","equalto","user")|list }} '
    '{{ messages|rejectattr("role","equalto","user")|map(attribute="content")|list }} '
    "{{ messages|map(attribute='role')|join(', ') }} {{ [1, 2, 3, 4]|select('odd')|list }} "
    '{{ ["a", "B"]|map("upper")|list }} {{ [0, 1, none, 2]|select|list }}',
    '{{ "  x"|indent(2) }}|{{ "a\\nb"|indent(2) }}|{{ "a\\nb"|indent(2, true) }}|'
    '{{ "a\\n\\nb"|indent(3, blank=true) }}',
    '{{ 3.7|int }} {{ "12"|int }} {{ "x"|int }} {{ "1.5"|float }} {{ -3|abs }} {{ 2.5|round }}'
    ' {{ 3.14159|round(2) }} {{ 2.5|round(0, "floor") }} {{ "4.7"|int }} {{ "0x1A"|int(0, 16) }}'
    ' {{ 7|round(1) }} {{ 7|round(1, "ceil") }} {{ (n is number)|round }}',
    '{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 1.5e-7 }} '
    '{{ 123456789.123 }} {{ -0.0 }} {{ 2.0 }} {{ 1/3 }} {{ 2**0.5 }} {{ big * 1000 }} {{ 1_000 }}',
    '{% macro f(a, b=2) %}[{{ a }}{{ b }}{{ c }}]{% endmacro %}{% set c = 5 %}{{ f(1) }}'
    '{{ f(1, b=3) }}{{ f(b=4, a=0) }}',
    "{{ (1, 2) }} {{ (1,) }} {{ 1, 2 }} {{ none }} {{ true }} "
    "{{ {'a': 'it\\'s', 'b': \"q\\\"\", 'c': 'both\\'\"'} }} {{ ['\\n', '\\\\'] }}",
    '{% for a, b in [[1,2],[3,4]] %}{{ a }}{{ b }}{% endfor %}'
    '{% for x in [1,2,3] if x > 1 %}{{ loop.index }}{{ x }}{{ loop.length }}{% else %}E{% endfor %}'
    '{% for x in [] %}{% else %}E{% endfor %}',
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}"
    "{{ d.keys()|list }}{{ d.values()|list }}{{ d.get('a') }}{{ d.get('z', 9) }}{{ d.get('z') }}",
    '{% set x %}a{{ n }}b{% endset %}{{ x }}|{% set y | upper %}b{% endset %}{{ y }}|'
    '{% filter upper %}abc{{ s }}{% endfilter %}',
    '{% set z = 0 %}{% set ns = namespace(a=0) %}{% filter upper %}{{ z }}{% set z = 1 %}'
    '{% set ns.a = 2 %}{{ z }}{% endfilter %}[{{ z }}{{ ns.a }}]'
    '{% set y %}{% set q = 1 %}{% endset %}[{{ q }}]',
    '{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}'
    '{% endif %}{{ i }}{% endfor %}{{ range(2, 9, 3)|list }}{{ range(5, 0, -2)|list }}',
    "{{ messages[0].content ~ '|' ~ n ~ f ~ none ~ true ~ zz }}",
    '{{ "%s-%d" % ("a", 3) }} {{ "%s"|format(4) }} {{ "%r" % ("q",) }} {{ "100%%" % () }}',
    '{{ [1, 2] == [1, 2] }} {{ 1 == 1.0 }} {{ true == 1 }} {{ true + 1 }} {{ 1 < 2 < 3 }} '
    '{{ 2 > 1 == 1 }} {{ "a" < "b" }} {{ [1, 2] < [1, 3] }} {{ zz == none }} {{ zz == zz }}',
    '{{ "Hello wORLD"|capitalize }} {{ "hello-world (x) [y]"|title }} {{ "hello2world"|title }}'
    ' {{ "hello2world".title() }} {{ "ÉCOLE"|lower }} {{ "straße"|upper }}',
    '{{ [3,1]|max }} {{ ["b","A"]|min }} {{ [1,2]|sum }} {{ ["a","A","b"]|unique|list }} '
    '{{ []|max }}| {{ [{"v": 3}, {"v": 5}]|sum(attribute="v") }} {{ [1.5, 2]|sum(start=1) }}',
    '{% with a = 1 %}{% set b = 2 %}{{ a }}{{ b }}{% endwith %}[{{ a }}{{ b }}]',
    '{% set x = 5 %}{% for i in [1,2] %}[{{ x }}]{% set x = i %}({{ x }}){% endfor %}{{ x }}',
    "{{ e|default('d') }}|{{ e|default('d', true) }}|{{ zz|default('d') }}|"
    "{{ none|default('d') }}|{{ zz|d }}|{{ zz.y|default('q') if zz is defined else 'u' }}",
    '{{ d.b|first }} {{ d.b|last }} {{ s|first }} {{ d|length }} {{ s|length }} {{ zz|length }}'
    ' {{ d|list }} {{ s|list|length }} {{ u|length }} {{ d|count }} {{ ""|first }}|',
    "{{ d|dictsort }} {{ d|items|list }} {{ 'x'|center(7) }}| {{ 'a b  c'|wordcount }} "
    "{{ '<a href=\"x\">&</a>'|e }} {{ 'x'|safe }} {{ d|attr('items') is callable }}",
    '{{ 10 / 4 }} {{ 10 // 4 }} {{ -10 // 4 }} {{ -10 % 4 }} {{ 10 % -4 }} {{ 7.5 // 2 }} '
    '{{ 7.5 % 2 }} {{ 2 ** -1 }} {{ 2 ** 0.5 }} {{ -7.5 // 2 }}',
    "{{ 'ab' * 3 }}{{ [1] * 2 }}{{ 3 * 'x' }}{{ 'x' * -1 }}|{{ [1] + [2] }}{{ (1,) + (2,) }}",
    '{% if n > 2 %}big{% elif n > 1 %}mid{% else %}small{% endif %}'
    '{% if n > 5 %}A{% elif n > 4 %}B{% endif %}',
    "{{ messages|length }}{{ messages|last|attr('role') }}{{ messages[-1]['role'] }}"
    "{{ messages.0.role }}",
    '{% raw %}{{ not rendered }} {% if %}{% endraw %}',
    'line1\n{% for i in [1,2] %}\n  item {{ i }}\n{% endfor %}\nend\n',
    '{% for i in [1] %}\n    {%- if true %}\n  kept\n    {% endif %}\n{% endfor %}',
    '{%+ if true %}  plus{% endif %}\n  {%+ if true %}x{%+ endif +%}\ny',
    '{{- "a" -}}\n\n  {{ "b" }}  \n{{- "c" }} {#- comment #} d\n{# trailing #}\n',
    '\r\nwindows\r\nlines\r\n{% if true %}\r\nx\r\n{% endif %}\r\n',
    '{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (a, b) %}{{ t[0] }}{{ t|list }}',
    "{{ 'abc'[1] }}{{ 'abc'[-1] }}{{ 'abc'[5] }}|{{ [1,2,3][-2:] }}{{ 'hello'[1:-1:2] }}",
    '{{ d.c.x is none }} {{ d.c.y is true }} {{ d.c.z is float }} {{ d.c.missing is defined }}',
    '{{ "Hello"|replace("l", "L", 1) }} {{ u|replace("ß", "ss") }} {{ 5|string ~ 5 }}',
    '{{ [1, [2, [3, "x"]]]|tojson }} {{ {"k": [1, {"j": []}]}|tojson(indent=1) }}',
    '{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}',
    '{{ strftime_now("%Y")|length }}',
    '{% generation %}inside {{ s }}{% set g = 1 %}{% endgeneration %}[{{ g }}]',
    '{{ "a" "b" }} {{ 0b11 }} {{ 0o17 }} {{ 0xff }} {{ 1.5e3 }} {{ 2E-3 }} {{ 00 }}',
    "{{ '{}-{}'.format(1, 'b') }} {{ '{1}{0}{x!r}'.format('a', 'b', x='c') }} {{ '{{}}'.format() }}",
    '{{ not true }} {{ not 0 }} {{ not "" }} {{ true and "x" }} {{ 0 or "y" }} {{ none or 0 }}'
    ' {{ "" and 1 }}',
    "{{ [{'k': 1}, {'k': 2}]|max(attribute='k')|list }} {{ d|map(attribute='zz')|list }} "
    "{{ messages|map(attribute='c_ontent')|list }}",
    '{{ "line1\\nline2".splitlines() }} {{ "abc".isdigit() }} {{ "123".isdigit() }} '
    '{{ "ABC".isupper() }} {{ "abc".islower() }} {{ "  ".isspace() }} {{ "ab".isalpha() }}',
]

LANG_ERRORS = [
    '{{ foo.bar }}',
    "{{ raise_exception('boom') }}",
    '{{ "a" + 1 }}',
    '{{ 5 // 0 }}',
    '{{ 1 / 0 }}',
    '{{ x|nosuchfilter }}',
    '{{ x is nosuchtest }}',
    '{% for x in %}{% endfor %}',
    '{% if true %}unclosed',
    '{% endif %}',
    '{{ [1, 2 }}',
    "{{ 'unterminated }}",
    '{% break %}',
    '{{ range(200000)|length }}',
    '{{ [1, 2].append(3) }}',
    '{{ 007 }}',
    '{{ 1 is defined not in [1] }}',
    "{{ '{:>5}'.format(1) if false else '}'.format() }}",
    '{% set x = 1 %}{% set x.y = 2 %}',
    '{{ none.attr.deeper }}',
    '{{ 1 < "a" }}',
    '{% for a, b in [[1, 2, 3]] %}{% endfor %}',
    '{{ undefined_fn() }}',
    '{% include "other.html" %}',
    '{{ (1).x.y }}',
    '{{ {"a": 1}["a"]["b"]["c"] }}',
    '{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}',
    '{{ "x" ~ }}',
    '{{ }}',
    '{# unclosed comment',
    '{% raw %} never closed',
]


@pytest.mark.parametrize('case', range(len(LANG_CASES)))
def test_language_case_matches_jinja2(case, tmp_path):
    src = LANG_CASES[case]
    ours = run_tool([], LANG_CTX, tmp_path, src)
    ref = reference_raw(src, LANG_CTX)
    assert ref[0] == 'ok', 'reference case must render: %r' % (ref,)
    assert ours == ref, 'case %d %r differs' % (case, src)


@pytest.mark.parametrize('case', range(len(LANG_ERRORS)))
def test_language_error_raises_in_both(case, tmp_path):
    src = LANG_ERRORS[case]
    ours = run_tool([], LANG_CTX, tmp_path, src)
    ref = reference_raw(src, LANG_CTX)
    assert ref[0] == 'err', 'jinja2 renders %r as %r' % (src, ref)
    assert ours[0] == 'err', 'we render %r as %r but jinja2 raised %s' % (src, ours, ref[1])
    assert ours[1].split(':')[0].isdigit(), 'errors start with LINE:COL: %r' % ours[1]


# --------------------------------------------------------------------------- random templates

class TemplateGenerator:
    """Random templates mixing data, whitespace markers, comments, ifs, loops, sets, filter
    blocks and expressions over the language context, for differential testing."""
    STRS = ["'a'", "'Hello World'", "' pad '", "'x\\ny'", "''", "'é'", "'ß'", "\"q'\"", "'\\t'"]
    FILTERS = ['trim', 'length', 'upper', 'lower', 'title', 'capitalize', 'first', 'last',
               'string', 'list', 'tojson', 'int', 'float', 'abs', 'reverse|list', 'sort',
               'unique|list', 'default("D")', 'default("D", true)', 'join(",")',
               'replace("a", "b")', 'round(1)', 'center(9)', 'wordcount', 'e', 'count', 'sum',
               'max', 'min', 'items|list', 'dictsort', 'map("upper")|list', 'select|list',
               'tojson(indent=2)', 'tojson(sort_keys=true)']
    TESTS = ['defined', 'none', 'string', 'number', 'odd', 'even', 'mapping', 'iterable',
             'sequence', 'not none', 'divisibleby 2', 'integer', 'float', 'lower', 'upper',
             'boolean', 'true', 'false', 'in [1, "a"]', 'eq 1']
    OPS = ['+', '-', '*', '/', '//', '%', '~', '==', '!=', '<', '>', '<=', 'and', 'or', 'in',
           'not in']
    WS = ['', ' ', '\n', '  \n', '\n  ', '\t', '\n\n']

    def __init__(self, seed):
        import random
        self.r = random.Random(seed)

    def expr(self, depth=0):
        r = self.r
        if depth > 3:
            return r.choice(['1', '2.5', "'s'", 'n', 's', 'none', 'true', '0', '-1'])
        k = r.randrange(19)
        sub = lambda: self.expr(depth + 1)  # noqa: E731
        return [
            lambda: r.choice(self.STRS),
            lambda: str(r.randrange(-5, 20)),
            lambda: r.choice(['0.5', '1e3', '2.0', '1e-7', '123.456']),
            lambda: r.choice(['n', 's', 'f', 'e', 'u', 'l', 'd', 'missing']),
            lambda: '%s %s %s' % (sub(), r.choice(self.OPS), sub()),
            lambda: '(%s)' % sub(),
            lambda: 'not %s' % sub(),
            lambda: '%s|%s' % (sub(), r.choice(self.FILTERS)),
            lambda: '%s is %s' % (sub(), r.choice(self.TESTS)),
            lambda: '%s if %s else %s' % (sub(), sub(), sub()),
            lambda: '[%s]' % ', '.join(sub() for _ in range(r.randrange(4))),
            lambda: '{%s}' % ', '.join('%s: %s' % (r.choice(self.STRS), sub())
                                       for _ in range(r.randrange(3))),
            lambda: '%s[%s]' % (r.choice(['s', 'l', 'messages', 'd', 'u', "'abc'"]),
                                r.choice(['0', '-1', '1:', ':2', '::-1', "'a'", '5', '1:3'])),
            lambda: '%s.%s(%s)' % (r.choice(['s', 'u', "' a b '", "'x,y'", 'e']),
                                   r.choice(['strip', 'upper', 'lower', 'title', 'split',
                                             'startswith', 'endswith', 'replace', 'lstrip',
                                             'rstrip', 'capitalize', 'find', 'count']),
                                   r.choice(['', "'a'", "','", "'a', 'b'"])),
            lambda: 'messages[%d].%s' % (r.randrange(3), r.choice(['role', 'content', 'x'])),
            lambda: '(%s, %s)' % (sub(), sub()),
            lambda: 'range(%d)|list' % r.randrange(5),
            lambda: 'd.%s' % r.choice(['a', 'b', 'c', 'items()|list', 'keys()|list',
                                       "get('a')", "get('z', 1)"]),
            lambda: r.choice(['ns.a', 'LOOPVAR', 'x', '-n']),
        ][k]()

    def tag(self, inner):
        r = self.r
        return '{%' + r.choice(['', '-', '+', '']) + ' ' + inner + ' ' + \
            r.choice(['', '-', '+', '']) + '%}'

    def block(self, depth=0):
        r = self.r
        parts = []
        for _ in range(r.randrange(1, 5)):
            k = r.randrange(9 if depth < 3 else 3)
            ws = r.choice(self.WS)
            if k == 0:
                parts.append(r.choice(['text', 'A', ' b ', 'é', '']) + ws)
            elif k == 1:
                parts.append('{{%s %s %s}}%s' % (r.choice(['', '-']), self.expr(),
                                                r.choice(['', '-']), ws))
            elif k == 2:
                parts.append('{#%s c %s#}%s' % (r.choice(['', '-']), r.choice(['', '-']), ws))
            elif k == 3:
                s = self.tag('if ' + self.expr()) + ws + self.block(depth + 1)
                if r.random() < 0.3:
                    s += self.tag('elif ' + self.expr()) + self.block(depth + 1)
                if r.random() < 0.4:
                    s += self.tag('else') + r.choice(self.WS) + self.block(depth + 1)
                parts.append(s + self.tag('endif') + r.choice(self.WS))
            elif k == 4:
                body = self.block(depth + 1).replace(
                    'LOOPVAR', r.choice(['loop.index', 'loop.first', 'loop.last',
                                         'loop.length', 'loop.revindex0', 'm']))
                s = self.tag('for m in ' + r.choice(['messages', 'l', 's', 'd', '[]',
                                                     'range(3)',
                                                     'messages if m.role != "x"'])) + ws + body
                if r.random() < 0.2:
                    s += self.tag('else') + self.block(depth + 1)
                parts.append(s + self.tag('endfor') + r.choice(self.WS))
            elif k == 5:
                parts.append(self.tag('set x = ' + self.expr()) + ws)
            elif k == 6:
                parts.append(self.tag('set ns.a = ' + self.expr()) + ws)
            elif k == 7:
                parts.append(ws + '  ' + self.tag('if true') + r.choice(self.WS) +
                             self.block(depth + 1) + '  ' + self.tag('endif') + ws)
            else:
                parts.append(self.tag('filter upper') + self.block(depth + 1) +
                             self.tag('endfilter'))
        return '{% set ns = namespace(a=1) %}' + ''.join(parts) if depth == 0 else ''.join(parts)


@pytest.mark.parametrize('seed', range(4))
def test_random_templates_match_jinja2(seed, tmp_path):
    gen = TemplateGenerator(seed)
    rendered = 0
    for i in range(40):
        src = gen.block().replace('LOOPVAR', 'n')
        ours = run_tool([], LANG_CTX, tmp_path, src)
        ref = reference_raw(src, LANG_CTX)
        if ref[0] == 'err':
            assert ours[0] == 'err', 'seed %d #%d %r: jinja2 raised %s, we rendered %r' % (
                seed, i, src, ref[1], ours[1])
        else:
            assert ours == ref, 'seed %d #%d %r differs' % (seed, i, src)
            rendered += 1
    assert rendered >= 10, 'the generator should mostly make renderable templates'


# --------------------------------------------------------------------------- Qwen3 thinking

QWEN3 = os.path.join(ROOT, 'tests', 'data', 'templates', 'Qwen--Qwen3-0.6B.json')

THINKING = {
    # the reasoning inside the content: the template splits it off at </think>
    'think_in_content': [msg('user', '2+2?'), msg('assistant', '<think>\nadd them\n</think>\n\n4'),
                         msg('user', 'and 3+3?')],
    'think_last_turn': [msg('user', '2+2?'),
                        msg('assistant', '<think>\n\nadd them\n\n</think>\n\n\n4')],
    # reasoning_content beside the content (kept for turns after the last user query)
    'reasoning_content': [msg('system', 'Think first.'), msg('user', '2+2?'),
                          msg('assistant', '4', reasoning_content='add them'),
                          msg('user', '3+3?'),
                          msg('assistant', '6', reasoning_content='\nagain\n')],
    # a user turn that is a tool response does not count as the last query
    'tool_response_user': [msg('user', 'weather?'),
                           msg('assistant', '<think>look it up</think>calling'),
                           msg('user', '<tool_response>\n21\n</tool_response>'),
                           msg('assistant', '<think>\nit is 21\n</think>It is 21.')],
}


@pytest.mark.parametrize('conv', sorted(THINKING))
def test_qwen3_thinking_matches_jinja2(conv, tmp_path):
    """Qwen3's template with enable_thinking absent, true and false, reasoning split from the
    content or given as reasoning_content: byte equal to jinja2."""
    data = json.load(open(QWEN3, encoding='utf-8'))
    for enable in (None, True, False):
        for agp in (True, False):
            ctx = {'messages': THINKING[conv], 'add_generation_prompt': agp,
                   'bos_token': data['bos_token'], 'eos_token': data['eos_token'],
                   'enable_thinking': enable}
            ours = run_tool(['--chat', QWEN3], ctx, tmp_path)
            ref = reference_chat(data['chat_template'], ctx)
            what = '%s/enable_thinking=%s/agp=%s' % (conv, enable, agp)
            assert ref[0] == 'ok', ref
            assert_same(ours, ref, what)


def test_qwen3_enable_thinking_false_closes_the_think_block(tmp_path):
    data = json.load(open(QWEN3, encoding='utf-8'))
    base = {'messages': [msg('user', 'Hi')], 'add_generation_prompt': True,
            'eos_token': data['eos_token']}
    off = run_tool(['--chat', QWEN3], dict(base, enable_thinking=False), tmp_path)
    on = run_tool(['--chat', QWEN3], dict(base, enable_thinking=True), tmp_path)
    assert off == ('ok', '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
                         '<think>\n\n</think>\n\n')
    assert on == ('ok', '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n')
