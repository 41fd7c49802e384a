"""`turbine check A.yaml B.yaml ...`: a deployment split into per-host files validated as a whole
(core/tb_check.h, docs/operations.md "Running on several machines").  The examples pass; each
refusal across files names the file, line and column of the key at fault, and the fix."""
import os
import re

from serving_util import ROOT
from tbproc import run

EXAMPLES = os.path.join(ROOT, 'examples')

ETCD = 'discovery:\n  backend: etcd\n  endpoints: [http://127.0.0.1:2379]\n'
FRONT = ('components:\n  - name: http\n    plugin: http\n    config:\n      router: router\n'
         '  - name: router\n    plugin: router\n')
ENGINE = ('components:\n  - name: engine\n    plugin: mock\n    config:\n'
          '      served_model_name: %s\n')


def files(tmp_path, **texts):
    out = []
    for name, text in texts.items():
        path = os.path.join(str(tmp_path), name + '.yaml')
        with open(path, 'w') as f:
            f.write(text)
        out.append(path)
    return out


def refused(paths, pattern, fix=None):
    rc, out = run('check', *paths, expect=2)
    assert re.search(pattern, out), out
    if fix:
        assert re.search(r'fix: .*' + fix, out), out
    assert 'across files' in out, out
    return out


def keygen(tmp_path, name):
    prefix = os.path.join(str(tmp_path), name)
    run('keygen', prefix, expect=0)
    with open(prefix + '.pub') as f:
        return [x.strip() for x in f if x.strip() and not x.startswith('# ')][0]


def test_examples_pass_as_deployments(tmp_path):
    for pair in (('head.yaml', 'worker.yaml'), ('etcd-frontend.yaml', 'etcd-engine.yaml')):
        rc, out = run('check', *[os.path.join(EXAMPLES, p) for p in pair], expect=0)
        assert 'deployment of 2 files: ok' in out and 'mock-llama' in out, out
    # the CURVE pair, with key files made as docs/operations.md says
    keys = [keygen(tmp_path, 'frontend'), keygen(tmp_path, 'engine')]
    with open(os.path.join(str(tmp_path), 'allowed'), 'w') as f:
        f.write('\n'.join(keys) + '\n')
    pair = [os.path.join(EXAMPLES, p) for p in ('curve-frontend.yaml', 'curve-engine.yaml')]
    os.environ['TURBINE_KEYS'] = str(tmp_path)  # the examples' key folder
    try:
        rc, out = run('check', *pair, expect=0)
        assert 'deployment of 2 files: ok' in out and 'CURVE on' in out, out
        # the engine's key missing from the allowed list that both files use
        with open(os.path.join(str(tmp_path), 'allowed'), 'w') as f:
            f.write(keys[0] + '\n')
        out = refused(pair, r'curve-frontend\.yaml:19:24: error: bus\.curve\.allowed_keys_file: '
                      r"'.*allowed': it does not list the public key of the process of "
                      r'.*curve-engine\.yaml', re.escape(keys[1]))
        assert out.count('error:') == 1, out  # its own key need not be in its own list
    finally:
        del os.environ['TURBINE_KEYS']


def test_namespace_and_discovery_must_agree(tmp_path):
    refused(files(tmp_path, a='namespace: x\n' + ETCD + FRONT,
                  b='namespace: y\n' + ETCD + ENGINE % 'm'),
            r"b\.yaml:1:12: error: namespace: 'y': .*a\.yaml has namespace 'x'",
            'same .namespace:. in every file')
    refused(files(tmp_path, a=ETCD + FRONT, b=ENGINE % 'm'),
            r"b\.yaml:1:1: error: discovery\.backend: 'embedded': .*uses discovery backend 'etcd'")
    refused(files(tmp_path, a=ETCD + FRONT,
                  b=ETCD.replace('127.0.0.1', '10.0.0.9') + ENGINE % 'm'),
            r'b\.yaml:3:14: error: discovery\.endpoints: the etcd endpoints or prefix differ')


def test_embedded_registry_needs_exactly_one_head(tmp_path):
    refused(files(tmp_path, a=FRONT, b=ENGINE % 'm'),
            r'a\.yaml:1:1: error: registry\.listen: no file has registry\.listen',
            r"registry: \{listen: tcp://HOST:7700\}")
    listen = 'registry:\n  listen: tcp://127.0.0.1:7700\n'
    refused(files(tmp_path, a=listen + FRONT, b=listen + ENGINE % 'm'),
            r"b\.yaml:2:11: error: registry\.listen: 'tcp://127\.0\.0\.1:7700': a second head")


def test_a_name_across_files_means_replicas(tmp_path):
    a, b, c = files(tmp_path, a=ETCD + FRONT, b=ETCD + ENGINE % 'm1', c=ETCD + ENGINE % 'm2')
    refused([a, b, c], r"c\.yaml:5:5: error: components\[0\]\(engine\): 'engine': .*b\.yaml:5 "
            r"has a component of this name \(plugin mock, model 'm1'\)", 'give it its own name')
    d, = files(tmp_path, d=ETCD + ENGINE % 'm1')
    rc, out = run('check', a, b, d, expect=0)  # the same engine on two hosts: replicas
    assert 'deployment of 3 files: ok' in out, out


def test_routers_and_models_are_served_somewhere(tmp_path):
    front = FRONT.replace('router: router', 'router: routr')
    refused(files(tmp_path, a=ETCD + front, b=ETCD + ENGINE % 'm'),
            r"a\.yaml:8:15: error: components\[0\]\(http\)\.config\.router: 'routr': no file has "
            r"a component 'routr' with plugin router", 'add a router component')
    refused(files(tmp_path, a=ETCD + FRONT, b=ETCD + 'components:\n  - name: e\n'
                  '    plugin: echo\n'),
            r"a\.yaml:5:5: error: components\[0\]\(http\): 'http': no file has a model")
    assert 'no file has an engine for this router' in refused(
        files(tmp_path, a=ETCD + FRONT, b=ETCD + 'components:\n  - name: e\n    plugin: echo\n'),
        r'a\.yaml:9:5: error: components\[1\]\(router\)')
    # a preprocessor's model needs an engine that takes token ids (the mock's default is text)
    model_dir = os.path.join(str(tmp_path), 'model')
    os.makedirs(model_dir)
    pre = ('  - name: pre\n    plugin: preprocessor\n    config:\n      served_model_name: m\n'
           '      model: %s\n' % model_dir)
    refused(files(tmp_path, a=ETCD + FRONT + pre, b=ETCD + ENGINE % 'm'),
            r"a\.yaml:14:26: error: components\[2\]\(pre\)\.config\.served_model_name: 'm': no "
            r"file has an engine that serves model 'm' from token ids", 'kind tokens')
    rc, out = run('check', *files(tmp_path, a=ETCD + FRONT + pre,
                                  b=ETCD + ENGINE % 'm' + '      kind: tokens\n'), expect=0)
    assert 'deployment of 2 files: ok' in out, out


def test_curve_keys_must_be_consistent(tmp_path):
    keys = {n: keygen(tmp_path, n) for n in ('head', 'worker')}
    allowed = os.path.join(str(tmp_path), 'allowed')
    with open(allowed, 'w') as f:
        f.write('%s\n%s\n' % (keys['head'], keys['worker']))
    t = str(tmp_path)

    def curve(name, head=None):
        text = ('bus:\n  curve:\n    secret_key_file: %s/%s.key\n    allowed_keys_file: %s\n'
                % (t, name, allowed))
        return text + ('    head_public_key_file: %s/%s.pub\n' % (t, head) if head else '')
    listen = 'registry:\n  listen: tcp://127.0.0.1:7700\n'
    ok = files(tmp_path, h=listen + curve('head') + FRONT,
               w=curve('worker', 'head') + ENGINE % 'm')
    rc, out = run('check', *ok, expect=0)
    assert 'CURVE on' in out, out
    # checked from one machine: another host's secret key need not be here when its public key
    # file is named; without one, the file says how to check it
    os.rename(os.path.join(t, 'worker.key'), os.path.join(t, 'worker.key.elsewhere'))
    pub_named = curve('worker', 'head').replace(
        '    allowed_keys_file', '    public_key_file: %s/worker.pub\n    allowed_keys_file' % t)
    rc, out = run('check', *files(tmp_path, h=listen + curve('head') + FRONT,
                                  w=pub_named + ENGINE % 'm'), expect=0)
    assert 'deployment of 2 files: ok' in out, out
    rc, out = run('check', *files(tmp_path, h=listen + curve('head') + FRONT,
                                  w=curve('worker', 'head') + ENGINE % 'm'), expect=2)
    assert re.search(r"w\.yaml:3:22: error: bus\.curve\.secret_key_file: '.*worker\.key': cannot "
                     r'access it.*\n  fix: check this file on its own host, or give its '
                     r'public_key_file', out), out
    os.rename(os.path.join(t, 'worker.key.elsewhere'), os.path.join(t, 'worker.key'))
    # CURVE in one file only
    refused(files(tmp_path, h=listen + curve('head') + FRONT, w=ENGINE % 'm'),
            r'w\.yaml:1:1: error: bus\.curve: the other files set bus\.curve')
    # the joining file names no head key, or the wrong one
    refused(files(tmp_path, h=listen + curve('head') + FRONT, w=curve('worker') + ENGINE % 'm'),
            r'w\.yaml:3:5: error: bus\.curve: --join .*h\.yaml over tcp with CURVE needs '
            r'bus\.curve\.head_public_key_file', re.escape(keys['head']))
    refused(files(tmp_path, h=listen + curve('head') + FRONT,
                  w=curve('worker', 'worker') + ENGINE % 'm'),
            r"w\.yaml:5:27: error: bus\.curve\.head_public_key_file: '.*worker\.pub': it is not "
            r'the public key of the head')


def test_a_file_invalid_on_its_own_stops_the_check(tmp_path):
    rc, out = run('check', *files(tmp_path, a=ETCD + FRONT, b=ETCD + 'components: []\n'),
                  expect=2)
    assert 'b.yaml:' in out and 'not checked across files' in out, out
