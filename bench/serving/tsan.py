#!/usr/bin/env python3
"""The serving path under ThreadSanitizer: bench/serving's throughput deployment with the http
plugin at `--threads` event loops, two mocks answering on the caller's thread (`direct: true`)
and one on its own thread, driven by wrk while /metrics, /health and /v1/models are polled, then
stopped with SIGTERM.  Prints the number of ThreadSanitizer reports (0 expected) and the first
of them.  Not a speed measurement.

  scons -Q -j2 --mode=tsan build/tsan/bin/turbine build/tsan/plugins/tb_http.so \\
      build/tsan/plugins/tb_router.so build/tsan/plugins/tb_mock.so
  .venv/bin/python bench/serving/tsan.py [--build build/tsan] [--threads 3] [--duration 4]

libzmq's own allocations are suppressed (tsan.supp says why).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import run  # noqa: E402


def deployment(port, threads):
    return ('namespace: bench\nlog:\n  level: warn\nshutdown:\n  grace_period: 5s\n'
            'components:\n'
            '  - name: http\n    plugin: http\n    config:\n      port: %d\n'
            '      router: router\n      threads: %d\n      health_interval: 200ms\n'
            '  - name: router\n    plugin: router\n    config:\n      policy: round_robin\n'
            '  - name: engine\n    plugin: mock\n    replicas: 2\n    config:\n'
            '      served_model_name: direct-model\n      speedup: 0\n      direct: true\n'
            '  - name: queued\n    plugin: mock\n    config:\n'
            '      served_model_name: queued-model\n      speedup: 0\n' % (port, threads))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=os.path.join(ROOT, 'build', 'tsan'))
    ap.add_argument('--threads', type=int, default=3)
    ap.add_argument('--duration', type=int, default=4, help='seconds of wrk per model')
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='tb-tsan-')
    port = run.free_port()
    cfg = os.path.join(tmp, 'turbine.yaml')
    with open(cfg, 'w') as f:
        f.write(deployment(port, a.threads))
    env = dict(os.environ)
    env['TSAN_OPTIONS'] = 'halt_on_error=0 suppressions=%s' % os.path.join(HERE, 'tsan.supp')
    log = os.path.join(tmp, 'turbine.log')
    p = run.Proc([os.path.join(a.build, 'bin', 'turbine'), 'serve', cfg], log, env=env)
    base = 'http://127.0.0.1:%d' % port
    try:
        run.wait_http(base + '/ready', timeout=60)
        for model in ('direct-model', 'queued-model'):
            body = dict(run.PROMPT, model=model)
            lua = os.path.join(tmp, model + '.lua')
            with open(lua, 'w') as f:
                f.write('wrk.method = "POST"\nwrk.body = %s\n'
                        'wrk.headers["Content-Type"] = "application/json"\n'
                        % json.dumps(json.dumps(body)))
            w = subprocess.Popen(['wrk', '-t1', '-c16', '-d%ds' % a.duration, '-s', lua,
                                  base + '/v1/chat/completions'], stdout=subprocess.PIPE,
                                 text=True)
            while w.poll() is None:
                for path in ('/metrics', '/health', '/v1/models'):
                    urllib.request.urlopen(base + path, timeout=10).read()
                time.sleep(0.2)
            out = w.communicate()[0]
            n = [line.strip() for line in out.splitlines() if 'requests in' in line]
            print('%s: %s' % (model, n[0] if n else out))
    finally:
        if p.p.poll() is None:
            p.p.send_signal(signal.SIGTERM)
        rc = p.p.wait(timeout=120)
        p.log.close()
    with open(log) as f:
        text = f.read()
    reports = text.split('WARNING: ThreadSanitizer')
    print('exit status %d, %d ThreadSanitizer report(s) (log: %s)' % (rc, len(reports) - 1, log))
    if len(reports) > 1:
        print('WARNING: ThreadSanitizer' + reports[1][:6000])
    sys.exit(0 if rc == 0 and len(reports) == 1 else 1)


if __name__ == '__main__':
    main()
