"""ZeroMQ CURVE on the tcp bus (docs/bus.md "Authentication and encryption"), on real processes
over loopback: `turbine keygen`, the bus.curve keys refused with file:line:column and never a
secret in the output, and a head + worker deployment that serves requests while a rogue without a
key, one with a key the deployment does not allow, and one that does not know the head's key are
refused (no registration, no answer, a warn line with the peer's address, counted in
turbine_bus_refused_total).  What the wire shows is checked in test_curve_capture.py."""
import os
import re
import stat
import time

from etcd_cluster import etcd  # noqa: F401 (a fixture)
from serving_util import (Turbine, chat, deployment, free_port, http_component, metric_sum,
                          metrics, mock_component, wait_for, wait_live, wait_models)
from tbproc import run


def keygen(tmp_path, name):
    prefix = os.path.join(str(tmp_path), name)
    rc, out = run('keygen', prefix, expect=0)
    with open(prefix + '.pub') as f:
        pub = [line.strip() for line in f if line.strip() and not line.startswith('# ')][0]
    with open(prefix + '.key') as f:
        secret = [line.strip() for line in f if line.strip() and not line.startswith('# ')][0]
    return prefix, pub, secret


def allowed_file(tmp_path, name, keys):
    path = os.path.join(str(tmp_path), name)
    with open(path, 'w') as f:
        f.write('# the processes of the test deployment\n' + '\n'.join(keys) + '\n')
    return path


def curve_block(prefix, allowed, head=None, public=True):
    lines = ['  curve:', '    secret_key_file: %s.key' % prefix,
             '    allowed_keys_file: %s' % allowed]
    if public:
        lines.append('    public_key_file: %s.pub' % prefix)
    if head:
        lines.append('    head_public_key_file: %s.pub' % head)
    return '\n'.join(lines)


def test_keygen_writes_a_private_pair_and_keeps_existing_files(tmp_path):
    prefix, pub, secret = keygen(tmp_path, 'node')
    assert len(pub) == 40 and len(secret) == 40 and pub != secret
    assert stat.S_IMODE(os.stat(prefix + '.key').st_mode) == 0o600
    rc, out = run('keygen', prefix, expect=2)
    assert 'already exists' in out and secret not in out
    with open(prefix + '.key') as f:
        assert secret in f.read()  # kept
    rc, out = run('keygen', prefix, '--force', expect=0)
    assert secret not in out
    with open(prefix + '.key') as f:
        assert secret not in f.read()  # replaced
    assert stat.S_IMODE(os.stat(prefix + '.key').st_mode) == 0o600


def check(tmp_path, text, name='bad.yaml'):
    path = os.path.join(str(tmp_path), name)
    with open(path, 'w') as f:
        f.write(text)
    return path, run('check', path)


def test_config_refuses_bad_key_files_without_showing_secrets(tmp_path):
    prefix, pub, secret = keygen(tmp_path, 'a')
    other, other_pub, other_secret = keygen(tmp_path, 'b')
    allowed = allowed_file(tmp_path, 'allowed', [pub])
    base = 'bus:\n%s\ncomponents:\n  - name: e\n    plugin: echo\n'

    path, (rc, out) = check(tmp_path, base % curve_block(prefix, allowed), 'good.yaml')
    assert rc == 0, out

    os.chmod(prefix + '.key', 0o644)
    path, (rc, out) = check(tmp_path, base % curve_block(prefix, allowed))
    assert rc == 2 and re.search(r'bad\.yaml:3:22: error: bus\.curve\.secret_key_file: .*can be '
                                 r'read by other users \(mode 0644\).*chmod 600', out), out
    os.chmod(prefix + '.key', 0o600)

    # a public key file that is not the secret's
    text = base % curve_block(prefix, allowed).replace(prefix + '.pub', other + '.pub')
    path, (rc, out) = check(tmp_path, text)
    assert rc == 2 and 'bus.curve.public_key_file' in out and 'does not hold the public key' \
        in out, out

    # malformed files: named by path and line, their content never shown
    bad = os.path.join(str(tmp_path), 'bad.key')
    with open(bad, 'w') as f:
        f.write('# a comment\n%s-not-a-key\n' % secret)
    os.chmod(bad, 0o600)
    bad_allowed = allowed_file(tmp_path, 'bad-allowed', [pub, 'hello'])
    empty_allowed = allowed_file(tmp_path, 'empty-allowed', [])
    text = base % curve_block(prefix, bad_allowed, public=False).replace(prefix + '.key', bad)
    path, (rc, out) = check(tmp_path, text)
    assert rc == 2, out
    assert re.search(r"secret_key_file: '.*bad\.key': .*line 2 is not a CURVE key", out), out
    assert re.search(r"allowed_keys_file: '.*bad-allowed': .*line 3 is not a CURVE public key",
                     out), out
    assert secret not in out
    text = base % curve_block(prefix, empty_allowed)
    path, (rc, out) = check(tmp_path, text)
    assert rc == 2 and 'lists no key' in out, out

    # missing files, unknown and missing keys, all at their line and column
    text = ('bus:\n  curve:\n    secret_key_file: /nonexistent/x.key\n    alowed_keys_file: a\n'
            'components:\n  - name: e\n    plugin: echo\n')
    path, (rc, out) = check(tmp_path, text)
    assert rc == 2, out
    assert re.search(r'bad\.yaml:3:22: error: bus\.curve\.secret_key_file: .*cannot access it',
                     out), out
    assert re.search(r"bad\.yaml:4:5: error: bus\.curve\.alowed_keys_file: unknown key\s+fix: "
                     r"did you mean 'allowed_keys_file'", out), out
    assert re.search(r'bus\.curve\.allowed_keys_file: required key is missing', out), out
    # serve refuses the same, before anything starts
    rc, out = run('serve', path, expect=2)
    assert 'nothing was started' in out


def wait_warn(proc, since, pattern, timeout=10):
    """Waits for a refusal line matching `pattern` written after offset `since` of the log."""
    rx = re.compile(r'WARN  bus: refused a bus connection from 127\.0\.0\.1.*' + pattern)
    return wait_for(lambda: rx.search(proc.log()[since:]), timeout, 'refusal /%s/' % pattern)


def test_curve_deployment_serves_and_refuses_rogues(tmp_path):
    head_p, head_pub, _ = keygen(tmp_path, 'head')
    work_p, work_pub, _ = keygen(tmp_path, 'worker')
    rogue_p, rogue_pub, _ = keygen(tmp_path, 'rogue')
    allowed = allowed_file(tmp_path, 'allowed', [head_pub, work_pub])
    port, reg = free_port(), free_port()
    join = 'tcp://127.0.0.1:%d' % reg
    head_yaml = deployment(port, [http_component(port, router='router'),
                                  ('router', 'router', 1, {'policy': 'least_loaded'})],
                           extra='registry:\n  listen: %s\nbus:\n%s' % (
                               join, curve_block(head_p, allowed)))
    worker_yaml = deployment(0, [mock_component('good', ttft='5ms', itl='1ms')],
                             extra='bus:\n  host: 127.0.0.1\n%s' % curve_block(work_p, allowed,
                                                                            head_p))
    # the two files check as one deployment; with the rogue's file they do not
    files = []
    for name, text in (('h', head_yaml), ('w', worker_yaml)):
        files.append(os.path.join(str(tmp_path), name + '-check.yaml'))
        with open(files[-1], 'w') as f:
            f.write(text)
    rc, out = run('check', *files, expect=0)
    assert 'deployment of 2 files: ok' in out and 'CURVE on' in out, out
    with Turbine(tmp_path, head_yaml) as head:
        wait_live(port)
        with Turbine(tmp_path, worker_yaml, name='worker', join=join) as worker:
            worker.wait_log('joined the registry')
            wait_models(port, {'good'})
            r = chat(port, model='good', max_tokens=3)
            assert r.status == 200, r.body
            # the worker's load events reach the head's router through the hub, over CURVE
            wait_for(lambda: metric_sum(metrics(port), 'turbine_router_load_events_total') > 0,
                     10, 'a load event from the worker')

            # a rogue without a key: never joins, its model never appears, no answer
            nokey = deployment(0, [mock_component('evil')], extra='bus:\n  host: 127.0.0.1\n'
                               '  join_timeout: 1500ms')
            mark = len(head.log())
            rogue = Turbine(tmp_path, nokey, name='rogue-nokey', join=join)
            assert rogue.wait_exit(20) == 1
            assert 'registry at %s did not answer' % join in rogue.log()
            # (libzmq sees the other mechanism, or the peer leave first when it saw it)
            wait_warn(head, mark, r'to tcp://127\.0\.0\.1:%d: (it does not use CURVE \(no key\)|the '
                      r'CURVE handshake did not complete \(the peer left)' % reg)

            # a rogue with a key of its own that the deployment does not allow (it knows and
            # allows the head's key): refused by the head's ZAP handler, its key named
            rogue_allowed = allowed_file(tmp_path, 'rogue-allowed', [head_pub, rogue_pub])
            wrong = deployment(0, [mock_component('evil')], extra='bus:\n  host: 127.0.0.1\n'
                               '  join_timeout: 1500ms\n' +
                               curve_block(rogue_p, rogue_allowed, head_p))
            mark = len(head.log())
            rogue = Turbine(tmp_path, wrong, name='rogue-wrongkey', join=join)
            assert rogue.wait_exit(20) == 1
            wait_warn(head, mark, r': its CURVE public key %s is not in the allowed keys'
                      % re.escape(rogue_pub))

            # a rogue that does not know the head's key (it names its own as the head's)
            blind = wrong.replace(head_p + '.pub', rogue_p + '.pub')
            mark = len(head.log())
            rogue = Turbine(tmp_path, blind, name='rogue-blind', join=join)
            assert rogue.wait_exit(20) == 1
            wait_warn(head, mark, r"(it does not know this process's public key|the CURVE handshake "
                      r"did not complete \(the peer left)")

            # an operator tool without keys gets no answer either
            rc, out = run('call', '--join', join, 'test.router.route', '--data', 'x', timeout=30)
            assert rc != 0 and 'did not answer' in out, out

            # the deployment kept serving; the rogue's model never appeared
            wait_models(port, {'good'})
            r = chat(port, model='good', max_tokens=3)
            assert r.status == 200, r.body
            m = metrics(port)
            refused = {dict(k[1]).get('reason'): v for k, v in m.items()
                       if k[0] == 'turbine_bus_refused_total'}
            assert refused.get('key_not_allowed', 0) >= 1, refused
            assert refused.get('handshake', 0) >= 2, refused
    assert 'evil' not in head.log()
    # no secret key material in any log
    for name in ('head', 'worker', 'rogue-nokey', 'rogue-wrongkey', 'rogue-blind'):
        with open(os.path.join(str(tmp_path), name + '.log')) as f:
            text = f.read()
        for p in (head_p, work_p, rogue_p):
            with open(p + '.key') as kf:
                assert kf.read().split('\n')[1] not in text


def test_without_keys_nothing_changes(tmp_path):
    """No bus.curve: the same two processes over tcp, as before (no CURVE line, no guard)."""
    port, reg = free_port(), free_port()
    join = 'tcp://127.0.0.1:%d' % reg
    head_yaml = deployment(port, [http_component(port)],
                           extra='registry:\n  listen: %s' % join)
    worker_yaml = deployment(0, [mock_component('plain', ttft='5ms', itl='1ms')])
    with Turbine(tmp_path, head_yaml) as head:
        wait_live(port)
        with Turbine(tmp_path, worker_yaml, name='worker', join=join):
            wait_models(port, {'plain'})
            assert chat(port, model='plain', max_tokens=2).status == 200
    assert 'CURVE' not in head.log()


def test_curve_with_discovery_on_etcd(tmp_path, etcd):
    """No head: a frontend process and an engine process find each other through etcd; routes
    carry the public key of their endpoints and hubs/ values the key of the event export, so
    requests and load events cross over CURVE.  A rogue that writes its route into etcd with a
    key the deployment does not allow is not taken: its model never appears."""
    front_p, front_pub, _ = keygen(tmp_path, 'front')
    eng_p, eng_pub, _ = keygen(tmp_path, 'engines')
    rogue_p, rogue_pub, _ = keygen(tmp_path, 'rogue')
    allowed = allowed_file(tmp_path, 'allowed', [front_pub, eng_pub])
    rogue_allowed = allowed_file(tmp_path, 'rogue-allowed', [front_pub, eng_pub, rogue_pub])
    port = free_port()

    def common(prefix, allowed_path):
        return ('discovery:\n  backend: etcd\n  endpoints: [%s]\n  lease_ttl: 2s\nbus:\n'
                '  host: 127.0.0.1\n%s' % (etcd.endpoints(), curve_block(prefix, allowed_path)))
    front = deployment(port, [http_component(port, router='router'),
                              ('router', 'router', 1, {'policy': 'least_loaded'})],
                       extra=common(front_p, allowed))
    engines = deployment(0, [mock_component('m', ttft='2ms', itl='1ms')],
                         extra=common(eng_p, allowed))
    rogue = deployment(0, [mock_component('evil', name='evil')],
                       extra=common(rogue_p, rogue_allowed))
    with Turbine(tmp_path, front, name='front') as f:
        with Turbine(tmp_path, engines, name='engines'):
            wait_models(port, {'m'})
            with Turbine(tmp_path, rogue, name='rogue'):
                f.wait_log(r'WARN .*refused route test\.evil\.generate instance \w+ of process '
                           r'\w+ in etcd \(at tcp://127\.0\.0\.1:\d+\): its CURVE public key is '
                           r'not in the allowed keys', timeout=20)
                for _ in range(5):
                    assert chat(port, model='m', max_tokens=2).status == 200
                wait_models(port, {'m'})
                deadline = time.time() + 10
                while metric_sum(metrics(port), 'turbine_router_load_events_total') == 0:
                    assert time.time() < deadline, 'no load event crossed to the router'
                    time.sleep(0.2)
