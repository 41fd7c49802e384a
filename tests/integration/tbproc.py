"""Helpers for tests that start real `turbine` processes: free ports, deployment files, and a
process wrapper that always stops what it started and checks sanitizer reports (exitcheck.py:
a crash or a sanitizer report fails the test whatever status the caller expects)."""
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time

import exitcheck
from conftest import BUILD

TURBINE = os.path.join(BUILD, 'bin', 'turbine')
SANITIZER_MARKS = exitcheck.SANITIZER_MARKS


# Ports for the processes a test starts come from a range of this pytest worker's own, below the
# kernel's ephemeral range (32768 and up on Linux): a port asked of the kernel with bind(0) can be
# handed to another worker's process (or used as a connection's source port) between our check
# and the child's bind, which made etcd and turbine fail with "address already in use".
PORT_BASE = 12000
PORT_SPAN = 2500
PORT_WORKERS = 8
_next_port = None


def _worker_index():
    name = os.environ.get('PYTEST_XDIST_WORKER', '')
    digits = name[2:] if name.startswith('gw') else ''
    return int(digits) % PORT_WORKERS if digits.isdigit() else 0


def free_port():
    """A TCP port free on 127.0.0.1 right now, from this worker's range. Ports are handed out in
    turn from a random start, so one worker never hands out the same port twice until it has
    gone round its whole range."""
    global _next_port
    base = PORT_BASE + _worker_index() * PORT_SPAN
    if _next_port is None:
        _next_port = random.randrange(PORT_SPAN)
    for _ in range(PORT_SPAN):
        port = base + _next_port
        _next_port = (_next_port + 1) % PORT_SPAN
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
        return port
    raise RuntimeError(f'no free TCP port in {base}..{base + PORT_SPAN - 1}')


def write_yaml(text, directory=None):
    fd, path = tempfile.mkstemp(suffix='.yaml', dir=directory)
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    return path


class Turbine:
    """A `turbine` child process whose output is collected in the background."""

    def __init__(self, *args, env=None):
        e = dict(os.environ)
        if env:
            e.update(env)
        exitcheck.sanitizer_env(e)
        self.args = [TURBINE] + list(args)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=e, text=True, errors='replace')
        self.lines = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip('\n'))

    @property
    def output(self):
        with self._lock:
            return '\n'.join(self.lines)

    def wait_for(self, text, timeout=10):
        """Waits until `text` appears in the output; fails with the output if it does not."""
        end = time.time() + timeout
        while time.time() < end:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                if text in self.output:
                    return
                raise AssertionError('turbine exited (%s) before %r appeared:\n%s'
                                     % (self.proc.returncode, text, self.output))
            time.sleep(0.02)
        raise AssertionError('%r did not appear within %ss:\n%s' % (text, timeout, self.output))

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=20, killed=False):
        """Waits for the exit and returns the status; a sanitizer report, a sanitizer's exit
        status or (unless `killed`: we sent SIGKILL) a death by signal fails the test."""
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self._reader.join(timeout=5)
        why = exitcheck.problem(None if killed and rc == -signal.SIGKILL else rc, self.output)
        if why:
            raise AssertionError('%s: %s\n%s' % (' '.join(self.args[1:2]), why,
                                                 self.output[-6000:]))
        return rc

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit status."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.wait(5, killed=True)
            raise AssertionError('turbine did not stop within %ss of SIGTERM:\n%s'
                                 % (timeout, self.output))

    def kill(self):
        """SIGKILL if still running; an earlier crash or sanitizer report still fails."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(5, killed=True)

    def assert_clean(self):
        """No sanitizer report in the output (meaningful after a clean exit)."""
        for mark in SANITIZER_MARKS:
            assert mark not in self.output, self.output


def run(*args, timeout=30, input=None, expect=None):
    """Runs turbine to completion; returns (status, output).  A crash or a sanitizer report
    fails the test whatever the status; `expect` (optional) is the exact status wanted."""
    p = subprocess.run([TURBINE] + list(args), capture_output=True, text=True, timeout=timeout,
                       input=input, errors='replace', env=exitcheck.sanitizer_env(dict(os.environ)))
    out = p.stdout + p.stderr
    exitcheck.check_exit(p.returncode, out, expect, 'turbine ' + ' '.join(args[:1]))
    return p.returncode, out
