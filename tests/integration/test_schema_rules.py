"""schemas/messages.yaml keeps its compatibility rules (docs/bus.md, "Versions and
compatibility"): schema 1.0 as today's file describes it is exactly the frozen schema the
sdk-v1 headers were generated from, and the generator refuses files that break the rules."""
import os
import subprocess
import sys

import yaml

from conftest import ROOT

GEN = os.path.join(ROOT, 'schemas', 'gen_msgs.py')
CURRENT = os.path.join(ROOT, 'schemas', 'messages.yaml')
FROZEN = os.path.join(ROOT, 'tests', 'plugins', 'sdk-v1', 'messages.yaml')


def test_schema_1_0_is_the_frozen_schema():
    with open(FROZEN) as f:
        frozen = yaml.safe_load(f)['messages']
    with open(CURRENT) as f:
        current = yaml.safe_load(f)['messages']
    assert frozen, FROZEN
    for pos, (name, old) in enumerate(frozen.items()):
        new = current[name]
        assert new['id'] == pos + 1, name  # the positional id old plugins compiled in
        assert new['version'] == old['version'] and new.get('since', 0) == 0, name
        fields = [(k, f['type'], bool(f.get('required'))) for k, f in new['fields'].items()
                  if f.get('since', 0) == 0]
        assert fields == [(k, f['type'], bool(f.get('required')))
                          for k, f in old['fields'].items()], name
        # whatever came later sits after every 1.0 field (the C struct grows at its end)
        names = list(new['fields'])
        assert names[:len(fields)] == [k for k, _, _ in fields], name


def generate(tmp_path, doc):
    src = tmp_path / 'm.yaml'
    src.write_text(yaml.safe_dump(doc, sort_keys=False))
    return subprocess.run([sys.executable, GEN, str(src), str(tmp_path / 'h.h'),
                           str(tmp_path / 'c.c')], capture_output=True, text=True)


def base():
    return {'schema': {'major': 1, 'minor': 1, 'abi_minor': [1, 2]},
            'messages': {
                'a': {'id': 1, 'version': 1, 'fields': {
                    'x': {'type': 'i64', 'required': True},
                    'y': {'type': 'str', 'since': 1}}},
                'b': {'id': 2, 'version': 1, 'since': 1, 'fields': {
                    'z': {'type': 'a'}}}}}


def test_generator_accepts_a_valid_file(tmp_path):
    r = generate(tmp_path, base())
    assert r.returncode == 0, r.stderr
    h = (tmp_path / 'h.h').read_text()
    assert '#define TB_SCHEMA_MINOR 1' in h and 'TB_MSG_B = 2' in h
    c = (tmp_path / 'c.c').read_text()
    assert 'struct s_a_m0 {' in c and '[TB_MSG_B]' in c


def test_generator_refuses_rule_breaks(tmp_path):
    cases = []
    d = base(); del d['messages']['a']['id']; cases.append((d, 'id must be'))
    d = base(); d['messages']['b']['id'] = 1; cases.append((d, "id 1 is already a's"))
    d = base(); d['messages']['a']['fields']['y']['required'] = True
    cases.append((d, 'must be optional'))
    d = base(); d['messages']['a']['fields']['w'] = {'type': 'bool'}
    cases.append((d, 'goes after every older field'))
    d = base(); d['messages']['a']['fields']['y']['since'] = 2
    cases.append((d, 'since must be a schema minor'))
    d = base(); d['schema']['abi_minor'] = [1]; cases.append((d, 'one increasing ABI minor'))
    d = base(); d['messages']['a']['fields']['v2'] = {'type': 'b', 'since': 0}
    cases.append((d, 'goes after every older field'))
    d = base(); del d['schema']; cases.append((d, 'no schema'))
    for doc, why in cases:
        r = generate(tmp_path, doc)
        assert r.returncode != 0 and why in r.stderr, (why, r.stderr)
