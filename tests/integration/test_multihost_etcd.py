"""Three hosts (network namespaces joined by a bridge, tests/integration/netns.py), each running an
etcd member and part of one deployment with discovery on etcd: a frontend (http + router) on host
0 and a mock engine on hosts 1 and 2, each serving its own model.  While a client on host 0 keeps
asking both models, the test kills host 2's processes and restarts them, partitions host 1 and
heals it, and restarts the etcd members one at a time.  It checks that routes converge within the
lease TTL (plus the passes that notice it), that requests to live engines keep succeeding, and that
no request hangs; and prints the figures (docs/operations.md quotes them)."""
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

import exitcheck
from conftest import BUILD
from etcd_cluster import ETCD, need_etcd
from netns import Hosts, available

TURBINE = os.path.join(BUILD, 'bin', 'turbine')
TTL = 3.0  # discovery.lease_ttl of every process
REQUEST_TIMEOUT = 10.0  # a client request not answered within this counts as a hang

CLIENT = r'''
import json, sys, time, urllib.request, urllib.error
url, models, until = sys.argv[1], sys.argv[2].split(','), float(sys.argv[3])
while time.time() < until:
    for m in models:
        body = json.dumps({'model': m, 'max_tokens': 2,
                           'messages': [{'role': 'user', 'content': 'hi'}]}).encode()
        t0 = time.time()
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    url + '/v1/chat/completions', data=body,
                    headers={'Content-Type': 'application/json'}), timeout=%TIMEOUT%) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except Exception as e:
            status = 'hang' if 'timed out' in str(e) else 'error: %s' % e
        print(json.dumps({'t': t0, 'model': m, 'status': status, 's': time.time() - t0}),
              flush=True)
    time.sleep(0.05)
'''.replace('%TIMEOUT%', str(REQUEST_TIMEOUT))


def deployment(hosts, i, components):
    eps = ', '.join('http://%s:2379' % hosts.addr(k) for k in range(3))
    return f"""namespace: mh
bus:
  host: {hosts.addr(i)}
discovery:
  backend: etcd
  endpoints: [{eps}]
  lease_ttl: {int(TTL)}s
components:
{components}"""


FRONTEND = """  - name: http
    plugin: http
    config:
      host: {addr}
      port: 8000
      router: router
      health_interval: 200ms
  - name: router
    plugin: router
"""
ENGINE = """  - name: engine
    plugin: mock
    config:
      served_model_name: {model}
      ttft: 5ms
      itl: 1ms
"""


class Site:
    """The processes of one test run: etcd members and turbines per host."""

    def __init__(self, hosts, tmp):
        self.hosts, self.tmp = hosts, tmp
        self.etcd, self.turbine, self.logs = {}, {}, {}

    def start_etcd(self, i):
        h = self.hosts
        peers = ','.join('m%d=http://%s:2380' % (k, h.addr(k)) for k in range(3))
        log = open(os.path.join(self.tmp, 'etcd%d.log' % i), 'ab')
        self.etcd[i] = h.popen(i, [ETCD, '--name', 'm%d' % i,
                                   '--data-dir', os.path.join(self.tmp, 'etcd%d' % i),
                                   '--listen-client-urls', 'http://%s:2379' % h.addr(i),
                                   '--advertise-client-urls', 'http://%s:2379' % h.addr(i),
                                   '--listen-peer-urls', 'http://%s:2380' % h.addr(i),
                                   '--initial-advertise-peer-urls', 'http://%s:2380' % h.addr(i),
                                   '--initial-cluster', peers, '--initial-cluster-state', 'new',
                                   '--initial-cluster-token', os.path.basename(self.tmp)],
                               stdout=log, stderr=subprocess.STDOUT)

    def start_turbine(self, i, components):
        path = os.path.join(self.tmp, 'host%d.yaml' % i)
        with open(path, 'w') as f:
            f.write(deployment(self.hosts, i, components))
        self.logs[i] = os.path.join(self.tmp, 'host%d.log' % i)
        env = exitcheck.sanitizer_env(dict(os.environ))
        self.turbine[i] = self.hosts.popen(i, [TURBINE, 'serve', path],
                                           stdout=open(self.logs[i], 'ab'),
                                           stderr=subprocess.STDOUT, env=env)

    def models(self):
        """The frontend's /v1/models, asked from host 0 (None when it does not answer)."""
        p = self.hosts.run(0, ['curl', '-s', '-m', '2', 'http://%s:8000/v1/models'
                               % self.hosts.addr(0)], capture_output=True, text=True)
        try:
            return sorted(m['id'] for m in json.loads(p.stdout)['data'])
        except (ValueError, KeyError):
            return None

    def wait_models(self, cond, timeout):
        """Seconds until cond(models) holds; fails after `timeout`."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if cond(self.models() or []):
                return time.time() - t0
            time.sleep(0.1)
        raise AssertionError('models %s after %.0f s; logs in %s' % (self.models(), timeout,
                                                                     self.tmp))


@pytest.fixture
def site():
    why = available()
    if why:
        pytest.skip('hardware: ' + why)  # a machine property, like a missing ISA
    need_etcd()
    with Hosts(3) as hosts:
        tmp = tempfile.mkdtemp(prefix='tb-multihost-')
        s = Site(hosts, tmp)
        for i in range(3):
            s.start_etcd(i)
        yield s


def test_three_hosts_converge_and_serve_through_faults(site):
    h = site.hosts
    site.start_turbine(0, FRONTEND.format(addr=h.addr(0)))
    site.start_turbine(1, ENGINE.format(model='m1'))
    site.start_turbine(2, ENGINE.format(model='m2'))
    up = site.wait_models(lambda m: m == ['m1', 'm2'], 60)
    script = os.path.join(site.tmp, 'client.py')
    with open(script, 'w') as f:
        f.write(CLIENT)
    plan_end = time.time() + 600
    client = h.popen(0, [sys.executable, script, 'http://%s:8000' % h.addr(0), 'm1,m2',
                         str(plan_end)], stdout=subprocess.PIPE, text=True)
    down = {'m1': [], 'm2': []}  # (from, to) windows a model's host was down or cut off
    figures = {'start: both models listed (s)': up}

    # 1. Host 2's processes killed: m2 leaves within the TTL; restarted, it comes back.
    time.sleep(2)
    t0 = time.time()
    site.turbine[2].kill()
    figures['kill: m2 gone after (s)'] = site.wait_models(lambda m: 'm2' not in m, TTL + 10)
    site.start_turbine(2, ENGINE.format(model='m2'))
    figures['restart: m2 back after (s)'] = site.wait_models(lambda m: 'm2' in m, 30)
    down['m2'].append((t0, time.time()))

    # 2. Host 1 partitioned (it loses etcd and the frontend): m1 leaves within the TTL; healed,
    # host 1 finds its lease gone, registers again, and m1 comes back.
    time.sleep(2)
    t0 = time.time()
    h.partition(1)
    figures['partition: m1 gone after (s)'] = site.wait_models(lambda m: 'm1' not in m,
                                                               TTL + 10)
    time.sleep(1)
    h.heal(1)
    figures['heal: m1 back after (s)'] = site.wait_models(lambda m: 'm1' in m, 40)
    down['m1'].append((t0, time.time()))

    # 3. etcd members restarted one at a time: both models stay served throughout.
    t_etcd = time.time()
    for i in (2, 1, 0):
        site.etcd[i].kill()
        site.etcd[i].wait()
        time.sleep(2)
        site.start_etcd(i)
        time.sleep(3)
    figures['etcd rolling restart: models after'] = site.models()
    t_etcd_end = time.time()

    client.kill()
    out, _ = client.communicate(timeout=30)
    recs = [json.loads(line) for line in out.splitlines() if line.startswith('{')]
    assert len(recs) > 100, out[-2000:]

    def was_down(r):
        return any(a - 1 <= r['t'] <= b + 1 for a, b in down[r['model']])

    live = [r for r in recs if not was_down(r)]
    hangs = [r for r in recs if r['status'] == 'hang' or r['s'] >= REQUEST_TIMEOUT]
    failed_live = [r for r in live if r['status'] != 200]
    during_etcd = [r for r in recs if t_etcd <= r['t'] <= t_etcd_end]
    figures.update({
        'requests': len(recs),
        'requests to live engines failed': len(failed_live),
        'requests during the etcd rolling restart (failed)': '%d (%d)' % (
            len(during_etcd), sum(r['status'] != 200 for r in during_etcd)),
        'requests to a down engine answered without a hang': sum(
            1 for r in recs if was_down(r) and r['status'] != 200 and r['s'] < REQUEST_TIMEOUT),
        'hangs': len(hangs),
        'slowest answer (s)': round(max(r['s'] for r in recs), 3),
    })
    print('\nmulti-host figures (lease_ttl %.0f s):' % TTL)
    for k, v in figures.items():
        print('  %-55s %s' % (k, round(v, 2) if isinstance(v, float) else v))
    assert hangs == []
    assert failed_live == [], failed_live[:5]
    assert figures['etcd rolling restart: models after'] == ['m1', 'm2']
    for i in (0, 1, 2):
        if site.turbine[i].poll() is None:
            site.turbine[i].terminate()
            site.turbine[i].wait(timeout=30)
    with open(site.logs[1]) as f:
        log1 = f.read()
    assert 'registering again' in log1 or 'etcd not reachable' in log1, log1[-3000:]
    for i in (0, 1):
        with open(site.logs[i]) as f:
            exitcheck.check_exit(site.turbine[i].returncode, f.read(), 0, 'turbine host%d' % i)
