"""Helpers for the serving integration tests: start the real `turbine serve` on generated YAML
and free ports, wait for it, talk HTTP with timeouts everywhere, read Prometheus metrics, and
stop processes cleanly (checking sanitizer reports after a clean stop, and a crash or a sanitizer
report whenever a process ended on its own: exitcheck.py)."""
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

import exitcheck
from conftest import BUILD, ROOT
import tbproc

free_port = tbproc.free_port  # one port picker for every test module (tbproc.py)

TURBINE = os.path.join(BUILD, 'bin', 'turbine')
ASAN = 'asan' in os.path.basename(os.path.normpath(BUILD))
# Everything is slower under the sanitizers; scale waits, never the assertions about order.
SLOW = 3.0 if ASAN else 1.0
SANITIZER_MARKS = exitcheck.SANITIZER_MARKS


def wait_for(pred, timeout, what, interval=0.02):
    """Polls `pred` until it returns something true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError('timed out after %.1f s waiting for %s (last: %r)'
                         % (timeout * SLOW, what, last))


class Turbine:
    """One `turbine serve` process.  Use as a context manager or call stop() in a finalizer."""

    def __init__(self, tmp_path, yaml_text, name='head', join=None, env=None):
        self.name = name
        self.yaml_path = os.path.join(str(tmp_path), name + '.yaml')
        self.log_path = os.path.join(str(tmp_path), name + '.log')
        with open(self.yaml_path, 'w') as f:
            f.write(yaml_text)
        cmd = [TURBINE, 'serve', self.yaml_path]
        if join:
            cmd += ['--join', join]
        e = dict(os.environ)
        if env:
            e.update(env)
        exitcheck.sanitizer_env(e)
        self._log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=e,
                                     cwd=ROOT)
        self.stopped = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop(check=exc[0] is None)

    def log(self):
        with open(self.log_path, 'rb') as f:
            return f.read().decode(errors='replace')

    def alive(self):
        return self.proc.poll() is None

    def wait_log(self, pattern, timeout=10):
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log()), timeout,
                        'log line /%s/ from %s' % (pattern, self.name))

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        """SIGKILL: the process reports nothing more.  If it had already ended on its own, or
        printed a sanitizer report before, that fails the test."""
        if self.stopped:
            return
        ended_alone = not self.alive()
        if not ended_alone:
            self.proc.kill()
        rc = self.proc.wait(timeout=10)
        self._log.close()
        self.stopped = True
        why = exitcheck.problem(rc if ended_alone else None, self.log())
        assert why is None, '%s: %s\n%s' % (self.name, why, self.log()[-6000:])

    def wait_exit(self, timeout):
        """Waits for the exit and returns the status; a crash fails the test (exitcheck)."""
        try:
            rc = self.proc.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError('%s did not exit within %.1f s' % (self.name, timeout * SLOW))
        exitcheck.check_exit(rc, self.log(), None, self.name)
        return rc

    def stop(self, check=True, timeout=20):
        """SIGTERM, wait for exit 0, and (when `check`) fail on sanitizer reports."""
        if self.stopped:
            return
        self.stopped = True
        rc = None
        try:
            if self.alive():
                self.proc.send_signal(signal.SIGTERM)
            rc = self.wait_exit(timeout)
        finally:
            if self.alive():
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._log.close()
        if check:
            self.check_clean(rc)

    def check_clean(self, rc):
        """Exit status 0 and no sanitizer report."""
        exitcheck.check_exit(rc, self.log(), 0, self.name)


@contextlib.contextmanager
def serving(tmp_path, port, components, models=(), timeout=20):
    """`turbine serve` of a deployment of `components` (see deployment()) on `port`, ready and,
    when `models` are named, listing them, until the block ends; stopped and checked then."""
    t = Turbine(tmp_path, deployment(port, components))
    try:
        wait_ready(port, timeout=timeout)
        if models:
            wait_models(port, set(models), timeout=timeout)
        yield t
    finally:
        t.stop()


def deployment(port, components, namespace='test', extra=''):
    """YAML for a deployment: `components` is a list of (name, plugin, replicas, config dict)."""
    lines = ['namespace: %s' % namespace, 'log:', '  level: info', 'shutdown:',
             '  grace_period: 20s']
    if extra:
        lines.append(extra.rstrip())
    lines.append('components:')
    for name, plugin, replicas, cfg in components:
        lines += ['  - name: %s' % name, '    plugin: %s' % plugin,
                  '    replicas: %d' % replicas]
        if cfg:
            lines.append('    config:')
            for k, v in cfg.items():
                lines.append('      %s: %s' % (k, json.dumps(v)))
    return '\n'.join(lines) + '\n'


def http_component(port, **cfg):
    c = {'port': port, 'health_interval': '200ms'}
    c.update(cfg)
    return ('http', 'http', 1, c)


def mock_component(model='mock-model', name='engine', replicas=1, **cfg):
    c = {'served_model_name': model}
    c.update(cfg)
    return (name, 'mock', replicas, c)


# ---- HTTP ----------------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def request(port, method, path, body=None, headers=None, timeout=15):
    """One HTTP request on a fresh connection; body may be bytes, str or a JSON-able object."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout * SLOW)
    try:
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault('Content-Type', 'application/json')
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def get(port, path, **kw):
    return request(port, 'GET', path, **kw)


def post(port, path, body, **kw):
    return request(port, 'POST', path, body=body, **kw)


def chat(port, content='hello there', model='mock-model', **params):
    body = {'model': model, 'messages': [{'role': 'user', 'content': content}]}
    body.update(params)
    return post(port, '/v1/chat/completions', body)


def wait_live(port, timeout=20):
    def ok():
        try:
            return get(port, '/live', timeout=2).status == 200
        except OSError:
            return False
    return wait_for(ok, timeout, '/live on port %d' % port, interval=0.05)


def wait_ready(port, timeout=20):
    def ok():
        try:
            return get(port, '/ready', timeout=2).status == 200
        except OSError:
            return False
    return wait_for(ok, timeout, '/ready on port %d' % port, interval=0.05)


def wait_models(port, expected, timeout=20):
    """Waits until /v1/models lists exactly `expected` (a set of ids)."""
    def ok():
        try:
            r = get(port, '/v1/models', timeout=2)
        except OSError:
            return False
        ids = {m['id'] for m in r.json()['data']} if r.status == 200 else None
        return ids == set(expected) and ids is not None
    return wait_for(ok, timeout, '/v1/models == %s' % sorted(expected), interval=0.05)


class Stream:
    """A raw streaming request: reads server-sent events as the server writes them."""

    def __init__(self, port, body, path='/v1/chat/completions', timeout=15):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout * SLOW)
        data = json.dumps(body).encode()
        self.sock.sendall(b'POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n'
                          b'Content-Length: %d\r\n\r\n' % (path.encode(), len(data)) + data)
        self.buf = b''
        self.status = None
        self.headers = {}
        self.raw = b''  # de-chunked body so far
        self._read_head()

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError('connection closed')
        self.buf += d

    def _read_head(self):
        while b'\r\n\r\n' not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b'\r\n\r\n', 1)
        lines = head.decode().split('\r\n')
        self.status = int(lines[0].split()[1])
        for l in lines[1:]:
            k, v = l.split(':', 1)
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get('transfer-encoding', '').lower() == 'chunked'

    def _next_chunk(self):
        """Moves one transfer chunk into self.raw; False at the last chunk."""
        if not self.chunked:
            if not self.buf:
                self._fill()
            self.raw += self.buf
            self.buf = b''
            return True
        while b'\r\n' not in self.buf:
            self._fill()
        size_line, rest = self.buf.split(b'\r\n', 1)
        size = int(size_line.split(b';')[0], 16)
        while len(rest) < size + 2:
            self._fill()
            size_line, rest = self.buf.split(b'\r\n', 1)
        self.raw += rest[:size]
        self.buf = rest[size + 2:]
        return size > 0

    def events(self):
        """Yields each event's data string ('[DONE]' included) as it arrives."""
        while True:
            while b'\n\n' not in self.raw:
                if not self._next_chunk() and b'\n\n' not in self.raw:
                    return
            ev, self.raw = self.raw.split(b'\n\n', 1)
            text = ev.decode()
            assert text.startswith('data: '), 'not an SSE data line: %r' % text
            yield text[len('data: '):]
            if text == 'data: [DONE]':
                return

    def body(self):
        if not self.chunked and 'content-length' in self.headers:
            n = int(self.headers['content-length'])
            while len(self.buf) < n:
                self._fill()
            self.raw += self.buf[:n]
            self.buf = self.buf[n:]
            return self.raw
        while self._next_chunk():
            pass
        return self.raw

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- metrics -------------------------------------------------------------------------------

def metrics(port):
    """Parses /metrics into {(name, frozenset(labels.items())): value}."""
    r = get(port, '/metrics')
    assert r.status == 200
    out = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith('#'):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, 'bad exposition line: %r' % line
        labels = {}
        if m.group(3):
            for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3)):
                labels[k] = v
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def metric_sum(ms, name, **labels):
    """Sum of every series of `name` whose labels include `labels`."""
    total = 0.0
    for (n, ls), v in ms.items():
        if n == name and all((k, str(val)) in ls for k, val in labels.items()):
            total += v
    return total


def series(ms, name):
    return {dict(ls).get('instance', ''): v for (n, ls), v in ms.items() if n == name}
