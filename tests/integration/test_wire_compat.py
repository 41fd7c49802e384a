"""The wire and the SDK as a versioned contract (docs/bus.md, "Versions and compatibility"):
- a plugin built against the frozen ABI 1.1 / schema 1.0 SDK (tests/plugins/sdk-v1) loads into
  today's host and serves, relaying to a mock engine whose chunks carry a field added since
  (token_logprob.bytes), with answers identical to the mock's own;
- a process speaking schema 1.0 (TB_SCHEMA_MINOR=0) joins a current head over tcp and the two
  exchange requests both ways;
- a peer whose schema cannot be bridged is refused at join, both fingerprints named."""
import os
import re
import subprocess

import pytest
import yaml

from conftest import BUILD, tool
from tbproc import run
from serving_util import (Turbine, deployment, free_port, http_component, mock_component, post,
                          wait_live, wait_models)

PLUGINS = os.path.join(BUILD, 'tests', 'plugins')
# The schema this build speaks (the newest minor of messages.yaml), e.g. '1.3'.
with open(os.path.join(os.path.dirname(__file__), '..', '..', 'schemas', 'messages.yaml')) as _f:
    _SCHEMA = yaml.safe_load(_f)['schema']
CURRENT = '%d.%d' % (_SCHEMA['major'], _SCHEMA['minor'])
PROMPT = 'Once upon a time'


def relay_component(model, target='test.engine.generate'):
    return ('relay', 'relay_v1', 1, {'served_model_name': model, 'target': target})


def registry(reg_port):
    return ('registry:\n  listen: tcp://127.0.0.1:%d\n  heartbeat_interval: 200ms\n'
            '  lease_ttl: 2s' % reg_port)


def assert_same_answers(port, direct, relayed):
    """The relayed model answers exactly as the mock it relays to (the mock is deterministic)."""
    for path, body in [
            ('/v1/completions', {'prompt': PROMPT, 'max_tokens': 6, 'logprobs': 2}),
            ('/v1/chat/completions', {'messages': [{'role': 'user', 'content': PROMPT}],
                                      'max_tokens': 5, 'logprobs': True, 'top_logprobs': 2}),
            ('/v1/completions', {'prompt': PROMPT, 'max_tokens': 3})]:
        a = post(port, path, dict(body, model=direct))
        b = post(port, path, dict(body, model=relayed))
        assert a.status == 200 and b.status == 200, (a.body, b.body)
        ca, cb = a.json()['choices'][0], b.json()['choices'][0]
        assert ca.get('text', ca.get('message')) == cb.get('text', cb.get('message'))
        assert ca['logprobs'] == cb['logprobs'] and ca['finish_reason'] == cb['finish_reason']
        assert a.json()['usage'] == b.json()['usage']
        if 'logprobs' in body:
            assert ca['logprobs'], 'the mock answered without log-probabilities'


def skipped_bytes(log):
    m = re.search(r'relay_v1 relayed (\d+) chunks; (\d+) bytes of them were fields newer', log)
    assert m, log[-3000:]
    return int(m.group(1)), int(m.group(2))


def test_old_sdk_plugin_serves_on_new_host(tmp_path):
    port = free_port()
    yaml = deployment(port, [http_component(port),
                             mock_component('direct', speedup=0, output_tokens=8),
                             relay_component('relayed')],
                      extra='plugin_path: [%s]' % PLUGINS)
    head = Turbine(tmp_path, yaml)
    try:
        wait_live(port)
        wait_models(port, {'direct', 'relayed'})
        assert 'relay_v1 (ABI 1.1) relays' in head.log()
        assert_same_answers(port, 'direct', 'relayed')
    finally:
        head.stop()
    chunks, skipped = skipped_bytes(head.log())
    # the mock's chunks carried token_logprob.bytes (schema 1.1); the host dropped exactly those
    # keys for the 1.0 plugin and nothing else was lost (the answers above are identical)
    assert chunks > 0 and skipped > 0


def test_versions_shown():
    rc, out = run('plugins', 'relay_v1', '--path', PLUGINS)
    assert rc == 0 and '(ABI 1.1, message schema 1.0,' in out, out
    rc, out = run('plugins', 'mock')
    assert rc == 0 and 'message schema %s,' % CURRENT in out, out
    rc, out = run('version')
    assert rc == 0 and re.search(r'message schema %s \(fingerprint [0-9a-f]{16}\)'
                                 % re.escape(CURRENT), out), out


@pytest.mark.parametrize('older', ['worker', 'head'])
def test_schema_minors_exchange_requests_over_tcp(tmp_path, older):
    """A schema 1.0 process and a current one joined over tcp, either being the head:
    requests go http (current) -> relay (1.0) -> mock (current) -> back, across the two processes both
    ways."""
    port, reg = free_port(), free_port()
    new_comps = [http_component(port), mock_component('direct', speedup=0, output_tokens=8)]
    old_comps = [relay_component('relayed')]
    pin = {'TB_SCHEMA_MINOR': '0'}
    extra_old = 'plugin_path: [%s]' % PLUGINS
    join = 'tcp://127.0.0.1:%d' % reg
    if older == 'worker':
        head = Turbine(tmp_path, deployment(port, new_comps, extra=registry(reg)))
    else:
        head = Turbine(tmp_path, deployment(0, old_comps, extra=extra_old + '\n' + registry(reg)),
                       env=pin)
        head.wait_log('relay_v1 .* relays')
    worker = None
    try:
        if older == 'worker':
            wait_live(port)
            worker = Turbine(tmp_path, deployment(0, old_comps, extra=extra_old), name='worker',
                             join=join, env=pin)
            worker.wait_log(r'joined the registry at \S+ \(process \w+, message schema 1\.0\)')
        else:
            worker = Turbine(tmp_path, deployment(port, new_comps), name='worker', join=join)
            worker.wait_log(r'joined the registry at \S+ \(process \w+, message schema %s\)'
                            % re.escape(CURRENT))
            wait_live(port)
        wait_models(port, {'direct', 'relayed'})
        assert_same_answers(port, 'direct', 'relayed')
        old = worker if older == 'worker' else head
        old.stop()
        chunks, skipped = skipped_bytes(old.log())
        assert chunks > 0 and skipped > 0
        worker.stop()  # checked (exit 0, no sanitizer report); a no-op for the one stopped
        head.stop()
    finally:
        if worker:
            worker.stop(check=False)
        head.stop(check=False)


def test_pinned_process_refuses_newer_plugins(tmp_path):
    yaml = deployment(0, [mock_component('direct')])
    p = Turbine(tmp_path, yaml, env={'TB_SCHEMA_MINOR': '0'})
    rc = p.wait_exit(20)
    assert rc != 0
    assert ('carries message schema %s, newer than the 1.0 this process speaks' % CURRENT
            in p.log())
    p = Turbine(tmp_path, yaml, name='bad', env={'TB_SCHEMA_MINOR': '7'})
    assert p.wait_exit(20) != 0
    assert "TB_SCHEMA_MINOR='7' is not a schema minor of this build" in p.log()


def test_incompatible_peer_refused_at_join(tmp_path):
    port, reg = free_port(), free_port()
    head = Turbine(tmp_path, deployment(port, [http_component(port)], extra=registry(reg)))
    peer = tool('tb_bus_schema_peer')
    addr = 'tcp://127.0.0.1:%d' % reg
    try:
        wait_live(port)
        out = subprocess.run([peer, addr, '2', '0', '1234abcd'], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 1, out
        assert 'different majors cannot be bridged' in out.stdout
        assert '000000001234abcd' in out.stdout and 'upgrade this process' in out.stdout
        # schema 1.0 with a fingerprint that is not this build's 1.0: a modified messages.yaml
        out = subprocess.run([peer, addr, '1', '0', 'feedface'], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 1, out
        assert '00000000feedface' in out.stdout and 'modified messages.yaml' in out.stdout
        head.wait_log(r'refused process schema-peer: .*feedface')
        # a newer minor of the same major is accepted (it judges the head itself)
        out = subprocess.run([peer, addr, '1', '9', '1'], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out
    finally:
        head.stop()
