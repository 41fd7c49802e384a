#!/usr/bin/env python3
"""Turbine's serving benchmark: the full path (http -> router -> mock engine at infinite speed)
against a static nginx answering the same JSON body, both driven by wrk at several concurrency
levels; then streaming time to first token and inter-token latency, against the mock's
configured values and against a trivial server emitting the same stream at the same times
(sse_baseline, the control: what the client and the machine add), so the framework's own share
is turbine's figure minus the control's.

Everything runs on this machine, on loopback ports chosen here; every process started is
stopped at the end.  Needs nginx and wrk (tools/setup.sh installs them) and a release build.

  .venv/bin/python bench/serving/run.py [--build build/release] [--duration 5]
      [--concurrency 1,8,32,128] [--nginx-workers 1] [--pin] [--json out.json]
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import stream_client  # noqa: E402

MODEL = 'bench-model'
PROMPT = {'model': MODEL, 'messages': [{'role': 'user', 'content': 'Say something.'}]}


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, timeout=20.0, status=200):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == status:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError('%s not answering %d within %.0f s' % (url, status, timeout))


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


# --pin: the servers on CPU 0, the load generators on CPU 1 (None: wherever the kernel puts them).
SERVER_CPUS = None
CLIENT_CPUS = None


def pinned(cmd, cpus):
    return (['taskset', '-c', ','.join(str(c) for c in sorted(cpus))] + cmd) if cpus else cmd


class Proc:
    def __init__(self, cmd, log, env=None, stdout=None):
        self.log = open(log, 'wb')
        self.p = subprocess.Popen(pinned(cmd, SERVER_CPUS), stdout=stdout or self.log,
                                  stderr=subprocess.STDOUT if stdout is None else self.log,
                                  env=env)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
        self.log.close()


def turbine_yaml(port, mock_cfg, replicas=2, spin=None, max_header=None, http_threads=None):
    """spin: bus.spin and the http loop's spin; max_header: the http plugin's max_header_size;
    http_threads: its threads (None: turbine's defaults)."""
    cfg = ''.join('      %s: %s\n' % (k, v) for k, v in mock_cfg.items())
    bus = 'bus:\n  spin: %s\n' % spin if spin is not None else ''
    http_spin = '      spin: %s\n' % spin if spin is not None else ''
    if max_header is not None:
        http_spin += '      max_header_size: %s\n' % max_header
    if http_threads is not None:
        http_spin += '      threads: %d\n' % http_threads
    return ('namespace: bench\nlog:\n  level: warn\nshutdown:\n  grace_period: 5s\n%s'
            'components:\n'
            '  - name: http\n    plugin: http\n    config:\n      port: %d\n'
            '      router: router\n      max_in_flight: 100000\n      max_connections: 100000\n%s'
            '  - name: router\n    plugin: router\n    config:\n      policy: round_robin\n'
            '  - name: engine\n    plugin: mock\n    replicas: %d\n    config:\n'
            '      served_model_name: %s\n%s' % (bus, port, http_spin, replicas, MODEL, cfg))


def start_turbine(build, tmp, name, mock_cfg, spin=None, max_header=None, http_threads=None):
    port = free_port()
    path = os.path.join(tmp, name + '.yaml')
    with open(path, 'w') as f:
        f.write(turbine_yaml(port, mock_cfg, spin=spin, max_header=max_header,
                             http_threads=http_threads))
    p = Proc([os.path.join(build, 'bin', 'turbine'), 'serve', path],
             os.path.join(tmp, name + '.log'))
    wait_http('http://127.0.0.1:%d/ready' % port)
    return p, port


def start_nginx(tmp, body, workers):
    port = free_port()
    prefix = os.path.join(tmp, 'nginx')
    os.makedirs(os.path.join(prefix, 'logs'), exist_ok=True)
    text = body.decode()
    assert '$' not in text, 'the body would need nginx variable escaping'
    text = text.replace('\\', '\\\\').replace("'", "\\'")
    conf = os.path.join(prefix, 'nginx.conf')
    with open(conf, 'w') as f:
        f.write("""worker_processes %d;
daemon off;
master_process on;
pid %s/nginx.pid;
error_log %s/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %s/body;
    proxy_temp_path %s/proxy;
    fastcgi_temp_path %s/fastcgi;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%d;
        location / {
            default_type application/json;
            return 200 '%s';
        }
    }
}
""" % ((workers, prefix, prefix) + (prefix,) * 5 + (port, text)))
    nginx = shutil.which('nginx') or '/usr/sbin/nginx'
    p = Proc([nginx, '-p', prefix, '-c', conf], os.path.join(prefix, 'run.log'))
    wait_http('http://127.0.0.1:%d/' % port)
    return p, port


def cpu_seconds(pid):
    """CPU time (user + system) of process `pid` and its descendants, all threads included."""
    total, tick = 0.0, os.sysconf('SC_CLK_TCK')
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open('/proc/%d/stat' % p) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for tid in os.listdir('/proc/%d/task' % p):
                with open('/proc/%d/task/%s/children' % (p, tid)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, IndexError, ValueError):
            continue
    return total


def wrk(url, lua, conns, duration, threads, server_pid=None):
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    out = subprocess.run(pinned(['wrk', '-t%d' % threads, '-c%d' % conns, '-d%ds' % duration,
                                 '--latency', '-s', lua, url], CLIENT_CPUS),
                         capture_output=True, text=True, timeout=duration + 60).stdout
    cpu = cpu_seconds(server_pid) - cpu0 if server_pid else float('nan')

    def lat(label):
        m = re.search(r'^\s*%s\s+([\d.]+)(us|ms|s)\s*$' % re.escape(label), out, re.M)
        if not m:
            return float('nan')
        v = float(m.group(1))
        return v / 1000.0 if m.group(2) == 'us' else v * 1000.0 if m.group(2) == 's' else v
    rps = re.search(r'Requests/sec:\s+([\d.]+)', out)
    errs = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    sock = re.search(r'Socket errors: (.*)', out)
    n = re.search(r'^\s*(\d+) requests in', out, re.M)
    return {'rps': float(rps.group(1)) if rps else float('nan'), 'p50_ms': lat('50%'),
            'cpu_us': cpu * 1e6 / int(n.group(1)) if n and int(n.group(1)) else float('nan'),
            'p99_ms': lat('99%'), 'non2xx': int(errs.group(1)) if errs else 0,
            'socket_errors': sock.group(1) if sock else None}


def median_run(runs):
    """Per figure, the median over rounds (errors summed)."""
    def med(key):
        v = sorted(r[key] for r in runs)
        return v[len(v) // 2]
    return {'rps': med('rps'), 'p50_ms': med('p50_ms'), 'p99_ms': med('p99_ms'),
            'cpu_us': med('cpu_us'), 'non2xx': sum(r['non2xx'] for r in runs),
            'socket_errors': '; '.join(r['socket_errors'] for r in runs if r['socket_errors'])
            or None}


def throughput(args, tmp):
    mock_cfg = {'speedup': 0, 'output_tokens': args.output_tokens}
    if args.mock_direct:
        mock_cfg['direct'] = 'true'
    tb, tport = start_turbine(args.build, tmp, 'throughput', mock_cfg, args.spin,
                              args.max_header_size, args.http_threads)
    ng = None
    try:
        url = 'http://127.0.0.1:%d/v1/chat/completions' % tport
        body = post_json(url, PROMPT)
        ng, nport = start_nginx(tmp, body, args.nginx_workers)
        lua = os.path.join(tmp, 'post.lua')
        with open(lua, 'w') as f:
            f.write('wrk.method = "POST"\nwrk.body = %s\n'
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    % json.dumps(json.dumps(PROMPT)))
        nurl = 'http://127.0.0.1:%d/v1/chat/completions' % nport
        rows = []
        for c in args.concurrency:
            threads = 1 if c < 4 else args.wrk_threads
            wrk(url, lua, c, 1, threads)  # warm-up
            wrk(nurl, lua, c, 1, threads)
            ts, ns = [], []
            for _ in range(args.rounds):  # interleaved, so load from elsewhere hits both
                ts.append(wrk(url, lua, c, args.duration, threads, tb.p.pid))
                ns.append(wrk(nurl, lua, c, args.duration, threads, ng.p.pid))
            t, n = median_run(ts), median_run(ns)
            rows.append({'concurrency': c, 'turbine': t, 'nginx': n, 'rounds': {
                'turbine': ts, 'nginx': ns},
                'ratio': t['rps'] / n['rps'] if n['rps'] else float('nan')})
        return rows, len(body)
    finally:
        if ng:
            ng.stop()
        tb.stop()


def start_baseline(build, tmp, args):
    """The control server: the same stream at the same times, nothing behind it."""
    exe = os.path.join(build, 'bench', 'sse_baseline')
    p = Proc([exe, '-t', '%g' % args.ttft_ms, '-i', '%g' % args.itl_ms, '-n',
              str(args.stream_tokens)], os.path.join(tmp, 'sse_baseline.log'),
             stdout=subprocess.PIPE)
    line = p.p.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != 'listening':
        p.stop()
        raise RuntimeError('sse_baseline did not start (see %s)' % tmp)
    return p, int(line[1])


def streaming(args, tmp):
    """Per concurrency level, the control's figures then turbine's, each the median of
    --stream-rounds runs (interleaved)."""
    cfg = {'ttft': '%gms' % args.ttft_ms, 'itl': '%gms' % args.itl_ms,
           'output_tokens': args.stream_tokens, 'speedup': 1}
    tb, port = start_turbine(args.build, tmp, 'streaming', cfg, args.spin)
    bl = None
    if CLIENT_CPUS:
        os.sched_setaffinity(0, CLIENT_CPUS)
    try:
        bl, bport = start_baseline(args.build, tmp, args)
        for p in (port, bport):  # warm-up
            stream_client.measure('127.0.0.1', p, MODEL, 2, 4, args.stream_tokens)
        rows = []
        for c in args.stream_concurrency:
            n = max(c * 4, 16)
            runs = {'turbine': [], 'control': []}
            for _ in range(args.stream_rounds):
                runs['control'].append(stream_client.measure('127.0.0.1', bport, MODEL, c, n,
                                                             args.stream_tokens))
                runs['turbine'].append(stream_client.measure('127.0.0.1', port, MODEL, c, n,
                                                             args.stream_tokens))
            row = {'concurrency': c, 'rounds': runs}
            for who, rs in runs.items():
                row[who] = {k: sorted(r[k] for r in rs)[len(rs) // 2]
                            for k in ('ttft_p50', 'ttft_p99', 'itl_p50', 'itl_p99')}
                row[who]['errors'] = sum(r['errors'] for r in rs)
                row[who]['tokens'] = sum(r['tokens'] for r in rs)
            rows.append(row)
        return rows
    finally:
        if CLIENT_CPUS:
            os.sched_setaffinity(0, range(os.cpu_count()))
        if bl:
            bl.stop()
        tb.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=os.path.join(ROOT, 'build', 'release'))
    ap.add_argument('--duration', type=int, default=3, help='seconds per wrk run')
    ap.add_argument('--rounds', type=int, default=3,
                    help='wrk runs per point and server, interleaved; medians are printed')
    ap.add_argument('--concurrency', default='1,8,32,128',
                    type=lambda s: [int(x) for x in s.split(',')])
    ap.add_argument('--wrk-threads', type=int, default=1)
    ap.add_argument('--nginx-workers', type=int, default=None,
                    help='nginx worker processes (default: as many as turbine\'s http threads, '
                         '1 unless --http-threads)')
    ap.add_argument('--http-threads', type=int, default=None,
                    help="the http plugin's threads for the throughput runs (default: turbine's "
                         "own; builds before the key refuse it)")
    ap.add_argument('--output-tokens', type=int, default=16)
    ap.add_argument('--ttft-ms', type=float, default=50)
    ap.add_argument('--itl-ms', type=float, default=10)
    ap.add_argument('--stream-tokens', type=int, default=64)
    ap.add_argument('--stream-concurrency', default='1,8,32',
                    type=lambda s: [int(x) for x in s.split(',')])
    ap.add_argument('--stream-rounds', type=int, default=3,
                    help='streaming runs per level and server, interleaved; medians are printed')
    ap.add_argument('--skip-streaming', action='store_true')
    ap.add_argument('--pin', action='store_true',
                    help='servers (turbine, nginx, the control) on CPU 0, wrk and the streaming '
                         'client on CPU 1: steadier figures on a small machine')
    ap.add_argument('--max-header-size', default=None,
                    help="the http plugin's max_header_size for the throughput runs, e.g. 16KiB "
                         "(default: turbine's own, 32KiB; it sizes libmicrohttpd's per-connection "
                         "pool, which is zeroed for every request)")
    ap.add_argument('--mock-direct', action='store_true',
                    help="throughput runs: the mocks answer on the http thread (mock 'direct: "
                         "true', a direct endpoint): the framework without the engine's thread "
                         "hand-off, which a real engine keeps (builds before the key refuse it)")
    ap.add_argument('--spin', help="turbine's bus.spin and http spin, e.g. 0 or 100us (default: "
                                   "turbine's own, 50us; builds before bus.spin refuse the key)")
    ap.add_argument('--json', help='also write the results here')
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    if a.nginx_workers is None:
        a.nginx_workers = a.http_threads or 1
    for tool in ('wrk', 'nginx'):
        if not shutil.which(tool) and not os.path.exists('/usr/sbin/' + tool):
            sys.exit('bench: %s not found: run tools/setup.sh' % tool)
    if not os.path.exists(os.path.join(a.build, 'bin', 'turbine')):
        sys.exit('bench: no turbine under %s: build it first (scons -Q -j2)' % a.build)
    if not a.skip_streaming and not os.path.exists(os.path.join(a.build, 'bench',
                                                                'sse_baseline')):
        sys.exit('bench: no bench/sse_baseline under %s: build it first (scons -Q -j2)' % a.build)
    if a.pin:
        if os.cpu_count() < 2 or not shutil.which('taskset'):
            sys.exit('bench: --pin needs 2 CPUs and taskset')
        global SERVER_CPUS, CLIENT_CPUS
        SERVER_CPUS, CLIENT_CPUS = {0}, {1}

    tmp = tempfile.mkdtemp(prefix='tb-bench-')
    results = {'cpus': os.cpu_count(), 'load_before': os.getloadavg(), 'pinned': a.pin}
    rows, body_len = throughput(a, tmp)
    results['throughput'] = rows
    print('\nThroughput: POST /v1/chat/completions, %d-token answers (%d-byte JSON body), '
          'median of %d interleaved wrk runs of %d s, http threads %s, nginx %d worker(s)%s%s'
          % (a.output_tokens, body_len, a.rounds, a.duration,
             a.http_threads or "turbine's default", a.nginx_workers,
             ', servers on CPU 0 and wrk on CPU 1' if a.pin else '',
             ', mocks answering on the http thread (direct)' if a.mock_direct else ''))
    print('"cpu us" is the server\'s CPU time (every thread and child process) per request')
    print('%5s | %11s %8s %8s %6s | %11s %8s %8s %6s | %6s' % (
        'conns', 'turbine r/s', 'p50 ms', 'p99 ms', 'cpu us', 'nginx r/s', 'p50 ms', 'p99 ms',
        'cpu us', 'ratio'))
    for r in rows:
        t, n = r['turbine'], r['nginx']
        print('%5d | %11.0f %8.2f %8.2f %6.1f | %11.0f %8.2f %8.2f %6.1f | %5.0f%%'
              % (r['concurrency'], t['rps'], t['p50_ms'], t['p99_ms'], t['cpu_us'], n['rps'],
                 n['p50_ms'], n['p99_ms'], n['cpu_us'], 100 * r['ratio']))
        for who in ('turbine', 'nginx'):
            if r[who]['non2xx'] or r[who]['socket_errors']:
                print('      %s: %d non-2xx, socket errors: %s'
                      % (who, r[who]['non2xx'], r[who]['socket_errors']))
    if not a.skip_streaming:
        srows = streaming(a, tmp)
        results['streaming'] = srows
        print('\nStreaming: mock ttft %g ms, itl %g ms, %d tokens per answer, median of %d '
              'interleaved runs; "control" is the same client against sse_baseline emitting the '
              'same stream at the same times; added = turbine - configured; framework = turbine '
              '- control' % (a.ttft_ms, a.itl_ms, a.stream_tokens, a.stream_rounds))
        print('%5s | %8s %8s %8s %8s %9s | %8s %8s %8s %8s %9s | %6s' % (
            'conns', 'ttft p50', 'ttft p99', 'ctl p99', 'added', 'framework', 'itl p50',
            'itl p99', 'ctl p99', 'added', 'framework', 'errors'))
        for r in srows:
            t, c = r['turbine'], r['control']
            print('%5d | %8.2f %8.2f %8.2f %8.2f %9.2f | %8.3f %8.3f %8.3f %8.3f %9.3f | %6d'
                  % (r['concurrency'], t['ttft_p50'], t['ttft_p99'], c['ttft_p99'],
                     t['ttft_p99'] - a.ttft_ms, t['ttft_p99'] - c['ttft_p99'], t['itl_p50'],
                     t['itl_p99'], c['itl_p99'], t['itl_p99'] - a.itl_ms,
                     t['itl_p99'] - c['itl_p99'], t['errors'] + c['errors']))
    results['load_after'] = os.getloadavg()
    print('\nload average before %.2f, after %.2f (other work on this machine skews the figures)'
          % (results['load_before'][0], results['load_after'][0]))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(results, f, indent=2)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
