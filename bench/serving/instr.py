#!/usr/bin/env python3
"""Instructions per request of the whole turbine process on bench/serving's throughput path
(http -> router -> 2 mock replicas at infinite speed, spin off), per thread, under callgrind.
Instructions do not move with the machine's load, unlike requests/s or time.

  .venv/bin/python bench/serving/instr.py [--build build/release] [--conns 8] [--duration 20]

Prints, per thread, the instructions per request and the functions with the largest self cost,
then the total.  Needs valgrind and wrk.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import run  # noqa: E402


def thread_summary(path, top):
    out = subprocess.run(['callgrind_annotate', '--inclusive=no', '--threshold=100', path],
                         capture_output=True, text=True).stdout
    total = 0
    m = re.search(r'^\s*([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS', out, re.M)
    if m:
        total = int(m.group(1).replace(',', ''))
    funcs = []
    for line in out.splitlines():
        f = re.match(r'^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)$', line)
        if f and 'PROGRAM TOTALS' not in line:
            funcs.append((int(f.group(1).replace(',', '')), f.group(2)))
    return total, funcs[:top]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=os.path.join(ROOT, 'build', 'release'))
    ap.add_argument('--conns', type=int, default=8)
    ap.add_argument('--duration', type=int, default=20, help='seconds of wrk under valgrind')
    ap.add_argument('--top', type=int, default=8, help='functions listed per thread')
    ap.add_argument('--mock-direct', action='store_true',
                    help="the mocks answer on the http thread (mock 'direct: true')")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='tb-instr-')
    cfg = os.path.join(tmp, 'turbine.yaml')
    port = run.free_port()
    with open(cfg, 'w') as f:
        mock_cfg = {'speedup': 0, 'output_tokens': 16}
        if args.mock_direct:
            mock_cfg['direct'] = 'true'
        f.write(run.turbine_yaml(port, mock_cfg, spin=0))
    out = os.path.join(tmp, 'callgrind.out')
    p = run.Proc(['valgrind', '--tool=callgrind', '--separate-threads=yes',
                  '--callgrind-out-file=' + out + '.%p', os.path.join(args.build, 'bin', 'turbine'),
                  'serve', cfg], os.path.join(tmp, 'turbine.log'))
    try:
        url = 'http://127.0.0.1:%d/v1/chat/completions' % port
        run.wait_http('http://127.0.0.1:%d/ready' % port, timeout=120)
        run.post_json(url, run.PROMPT)
        lua = os.path.join(tmp, 'post.lua')
        with open(lua, 'w') as f:
            f.write('wrk.method = "POST"\nwrk.body = %s\n'
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    % json.dumps(json.dumps(run.PROMPT)))
        # the counts cover start-up and shutdown too; enough requests make those negligible
        r = subprocess.run(['wrk', '-t1', '-c%d' % args.conns, '-d%ds' % args.duration, '--timeout',
                            '10s', '-s', lua, url], capture_output=True, text=True).stdout
        m = re.search(r'(\d+) requests in', r)
        n = int(m.group(1)) + 2 if m else 0
        non2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', r)
        if not n or non2xx:
            sys.exit('wrk failed or got errors:\n' + r)
    finally:
        p.stop()
        time.sleep(1)
    files = sorted(glob.glob(out + '.*'))
    grand = 0
    print('%d requests, %d connections, %s' % (n, args.conns, args.build))
    for path in files:
        total, funcs = thread_summary(path, args.top)
        if total < n * 100:  # threads that did next to nothing
            continue
        grand += total
        print('\n%s: %.1f k instructions per request' % (os.path.basename(path), total / n / 1e3))
        for cost, name in funcs:
            print('  %8.2f k  %s' % (cost / n / 1e3, name[:110]))
    print('\ntotal: %.1f k instructions per request (callgrind files in %s)' % (grand / n / 1e3, tmp))


if __name__ == '__main__':
    main()
