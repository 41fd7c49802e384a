"""Hosts made of Linux network namespaces for multi-host tests: each host is a namespace joined to
one bridge by a veth pair, with an address of a private range inside the namespace only.  Needs
root (CAP_NET_ADMIN) and iproute2; everything is removed by Hosts.remove(), also after a failure.

    with Hosts(3) as hosts:
        hosts.popen(0, [...])          # runs inside host 0 (address hosts.addr(0))
        hosts.partition(1)             # host 1's link down: it can reach no one
        hosts.heal(1)
"""
import os
import shutil
import subprocess
import uuid

IP = shutil.which('ip') or '/usr/sbin/ip'
SUBNET = '10.213.%d.%d'


def available():
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return 'not root: network namespaces need CAP_NET_ADMIN'
    if not os.path.exists(IP):
        return 'iproute2 (ip) absent'
    name = 'tbprobe' + uuid.uuid4().hex[:6]
    p = subprocess.run([IP, 'netns', 'add', name], capture_output=True, text=True)
    if p.returncode != 0:
        return 'cannot create a network namespace: ' + p.stderr.strip()
    subprocess.run([IP, 'netns', 'del', name], capture_output=True)
    return None


def _ip(*args, ns=None):
    cmd = ([IP, 'netns', 'exec', ns, IP] if ns else [IP]) + list(args)
    subprocess.run(cmd, check=True, capture_output=True, text=True)


class Hosts:
    def __init__(self, n):
        tag = uuid.uuid4().hex[:5]
        self.bridge = 'tbbr' + tag
        self.ns = ['tbh%d%s' % (i, tag) for i in range(n)]
        self.veth = ['tbv%d%s' % (i, tag) for i in range(n)]  # root side of each pair
        self.net = int(tag[:2], 16) % 200 + 20  # third octet, so parallel runs do not clash
        self.procs = []

    def addr(self, i):
        return SUBNET % (self.net, i + 1)

    def __enter__(self):
        try:
            _ip('link', 'add', self.bridge, 'type', 'bridge')
            _ip('link', 'set', self.bridge, 'up')
            for i, ns in enumerate(self.ns):
                _ip('netns', 'add', ns)
                _ip('link', 'add', self.veth[i], 'type', 'veth', 'peer', 'name', 'eth0', 'netns',
                    ns)
                _ip('link', 'set', self.veth[i], 'master', self.bridge)
                _ip('link', 'set', self.veth[i], 'up')
                _ip('addr', 'add', self.addr(i) + '/24', 'dev', 'eth0', ns=ns)
                _ip('link', 'set', 'eth0', 'up', ns=ns)
                _ip('link', 'set', 'lo', 'up', ns=ns)
        except Exception:
            self.remove()
            raise
        return self

    def __exit__(self, *exc):
        self.remove()

    def popen(self, i, cmd, **kw):
        p = subprocess.Popen([IP, 'netns', 'exec', self.ns[i]] + list(cmd), **kw)
        self.procs.append(p)
        return p

    def run(self, i, cmd, **kw):
        return subprocess.run([IP, 'netns', 'exec', self.ns[i]] + list(cmd), **kw)

    def partition(self, i):
        _ip('link', 'set', self.veth[i], 'down')

    def heal(self, i):
        _ip('link', 'set', self.veth[i], 'up')

    def remove(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in self.ns:
            subprocess.run([IP, 'netns', 'del', ns], capture_output=True)
        for v in self.veth:
            subprocess.run([IP, 'link', 'del', v], capture_output=True)
        subprocess.run([IP, 'link', 'del', self.bridge], capture_output=True)
