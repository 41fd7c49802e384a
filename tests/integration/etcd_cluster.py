"""Real etcd servers for the tests: one member, or a cluster of several on loopback ports.

etcd comes from Debian's etcd-server package (tools/setup.sh installs it).  Each member gets its
own data folder under a temporary directory and is killed (SIGKILL, as a crash would) by stop().
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import need
from tbproc import free_port

ETCD = shutil.which('etcd') or '/usr/bin/etcd'


class Cluster:
    def __init__(self, members=1):
        self.dir = tempfile.mkdtemp(prefix='tb-etcd-')
        self.names = ['m%d' % i for i in range(members)]
        self.client = {n: 'http://127.0.0.1:%d' % free_port() for n in self.names}
        self.peer = {n: 'http://127.0.0.1:%d' % free_port() for n in self.names}
        self.procs = {}
        self.initial = ','.join('%s=%s' % (n, self.peer[n]) for n in self.names)

    def endpoints(self, names=None):
        return ','.join(self.client[n] for n in (names or self.names))

    def start(self, name=None, state='new'):
        for n in ([name] if name else self.names):
            data = os.path.join(self.dir, n)
            log = open(os.path.join(self.dir, n + '.log'), 'ab')
            self.procs[n] = subprocess.Popen(
                [ETCD, '--name', n, '--data-dir', data,
                 '--listen-client-urls', self.client[n], '--advertise-client-urls', self.client[n],
                 '--listen-peer-urls', self.peer[n], '--initial-advertise-peer-urls', self.peer[n],
                 '--initial-cluster', self.initial, '--initial-cluster-state', state,
                 '--initial-cluster-token', os.path.basename(self.dir)],
                stdout=log, stderr=subprocess.STDOUT)
        for n in ([name] if name else self.names):
            self.wait_ready(n)
        return self

    def wait_ready(self, name, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.procs[name].poll() is not None:
                raise RuntimeError('etcd %s exited: %s' % (name, self.log(name)[-2000:]))
            try:
                self.post(name, '/v3/kv/range', {'key': 'AA=='})
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError('etcd %s not ready in %ds: %s' % (name, timeout, self.log(name)[-2000:]))

    def post(self, name, path, body):
        req = urllib.request.Request(self.client[name] + path, data=json.dumps(body).encode(),
                                     method='POST')
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def log(self, name):
        with open(os.path.join(self.dir, name + '.log'), errors='replace') as f:
            return f.read()

    def kill(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def stop(self):
        for n in list(self.procs):
            self.kill(n)
        shutil.rmtree(self.dir, ignore_errors=True)


def need_etcd():
    need(ETCD, 'etcd (Debian package etcd-server; tools/setup.sh installs it)')


@pytest.fixture
def etcd():
    """One etcd member for the test, killed afterwards."""
    need_etcd()
    c = Cluster(1).start()
    yield c
    c.stop()
