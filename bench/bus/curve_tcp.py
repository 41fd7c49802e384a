"""The cost of CURVE on the bus's tcp path (docs/bus.md "Authentication and encryption"): a head
(http frontend + router) and a worker (a mock engine with no delays) joined over tcp on loopback,
driven by wrk, with and without bus.curve.  Plain and CURVE runs alternate (A B A B ...: the
machine is shared), each pair on fresh processes; per-pair ratios are printed with their median
and range.  Run under `flock /work/bench.lock` on a shared machine.

    .venv/bin/python bench/bus/curve_tcp.py [--build build/release] [--pairs 3] [--duration 3]
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def keypair(turbine, tmp, name):
    prefix = os.path.join(tmp, name)
    subprocess.run([turbine, 'keygen', prefix, '--force'], check=True, capture_output=True)
    with open(prefix + '.pub') as f:
        return prefix, [x.strip() for x in f if x.strip() and not x.startswith('# ')][0]


def start(turbine, tmp, name, text, join=None):
    path = os.path.join(tmp, name + '.yaml')
    with open(path, 'w') as f:
        f.write(text)
    cmd = [turbine, 'serve', path] + (['--join', join] if join else [])
    return subprocess.Popen(cmd, stdout=open(os.path.join(tmp, name + '.log'), 'wb'),
                            stderr=subprocess.STDOUT)


def wait_model(port, model, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/v1/models' % port, timeout=1) as r:
                if model in [m['id'] for m in json.load(r)['data']]:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit('model %s not listed within %d s' % (model, timeout))


def wrk(port, lua, conns, duration):
    out = subprocess.run(['wrk', '-t1', '-c%d' % conns, '-d%ds' % duration, '--latency', '-s',
                          lua, 'http://127.0.0.1:%d/v1/chat/completions' % port],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    p50 = re.search(r'50%\s+([\d.]+)(us|ms|s)', out)
    scale = {'us': 1e-3, 'ms': 1.0, 's': 1e3}[p50.group(2)]
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    if errors:
        raise SystemExit('wrk saw %s errors:\n%s' % (errors.group(1), out))
    return rps, float(p50.group(1)) * scale


def run_once(args, tmp, curve, conns_list):
    port, reg = free_port(), free_port()
    join = 'tcp://127.0.0.1:%d' % reg
    keys = ''
    wkeys = ''
    if curve:
        allowed = os.path.join(tmp, 'allowed')
        keys = ('  curve:\n    secret_key_file: %s/head.key\n    allowed_keys_file: %s\n'
                % (tmp, allowed))
        wkeys = ('  curve:\n    secret_key_file: %s/worker.key\n    allowed_keys_file: %s\n'
                 '    head_public_key_file: %s/head.pub\n' % (tmp, allowed, tmp))
    head = start(args.turbine, tmp, 'head', f"""namespace: bench
log: {{level: warn}}
registry:
  listen: {join}
bus:
  host: 127.0.0.1
{keys}components:
  - name: http
    plugin: http
    config: {{host: 127.0.0.1, port: {port}, router: router}}
  - name: router
    plugin: router
""")
    worker = start(args.turbine, tmp, 'worker', f"""namespace: bench
log: {{level: warn}}
bus:
  host: 127.0.0.1
{wkeys}components:
  - name: engine
    plugin: mock
    config: {{served_model_name: m, ttft: 0s, itl: 0s, output_tokens: {args.tokens}}}
""", join=join)
    try:
        wait_model(port, 'm')
        wrk(port, args.lua, 4, 1)  # warm-up
        return {c: wrk(port, args.lua, c, args.duration) for c in conns_list}
    finally:
        for p in (worker, head):
            p.terminate()
            p.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--build', default=os.path.join(ROOT, 'build', 'release'))
    ap.add_argument('--pairs', type=int, default=3)
    ap.add_argument('--duration', type=int, default=3)
    ap.add_argument('--tokens', type=int, default=4, help='tokens per answer (mock)')
    ap.add_argument('--conns', default='1,16')
    args = ap.parse_args()
    args.turbine = os.path.join(args.build, 'bin', 'turbine')
    conns_list = [int(c) for c in args.conns.split(',')]
    tmp = tempfile.mkdtemp(prefix='tb-curve-bench-')
    _, head_pub = keypair(args.turbine, tmp, 'head')
    _, worker_pub = keypair(args.turbine, tmp, 'worker')
    with open(os.path.join(tmp, 'allowed'), 'w') as f:
        f.write(head_pub + '\n' + worker_pub + '\n')
    args.lua = os.path.join(tmp, 'post.lua')
    with open(args.lua, 'w') as f:
        f.write('wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = '
                '"application/json"\n' % json.dumps(json.dumps({
                    'model': 'm', 'max_tokens': args.tokens,
                    'messages': [{'role': 'user', 'content': 'hello there'}]})))
    pairs = []
    for i in range(args.pairs):
        plain = run_once(args, tmp, False, conns_list)
        curve = run_once(args, tmp, True, conns_list)
        pairs.append((plain, curve))
        for c in conns_list:
            print('pair %d, %2d conns: plain %8.0f req/s p50 %.3f ms | curve %8.0f req/s p50 '
                  '%.3f ms' % (i + 1, c, plain[c][0], plain[c][1], curve[c][0], curve[c][1]),
                  flush=True)
    for c in conns_list:
        thr = [cu[c][0] / pl[c][0] for pl, cu in pairs]
        lat = [cu[c][1] / pl[c][1] for pl, cu in pairs]
        print('%2d conns: CURVE/plain throughput median %.3f (range %.3f..%.3f), p50 latency '
              'median %.3f (range %.3f..%.3f), %d pairs'
              % (c, statistics.median(thr), min(thr), max(thr), statistics.median(lat), min(lat),
                 max(lat), len(pairs)))


if __name__ == '__main__':
    main()
