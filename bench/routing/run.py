#!/usr/bin/env python3
"""KV-aware routing and request migration, measured on this machine (bench/routing/README.md).

Everything runs as real processes over tcp: a head (http, router, preprocessor, registry) and
three engine processes joined to it.

  routing    a shared-prefix workload (--groups system prompts of --prefix tokens, each request
             one of them plus --suffix tokens of its own, Poisson arrivals at --rate) against
             mock engines with a pretend prefix cache and a per-token prefill cost, for the
             policies kv_aware, round_robin and least_loaded in turn (--rounds times, alternated):
             prefix-cache hit rate (cached prompt tokens / prompt tokens, from the answers'
             usage) against the ideal (every repeat of a system prompt finds all its full blocks),
             TTFT p50/p99 and throughput.  With --cpu, a short run of the same against the CPU
             engine on ../shared/models/tinystories-656k.
  migration  streaming load (--streams concurrent greedy streams) while one engine process is
             SIGKILLed every --kill-every seconds and restarted, --kills times: every stream must
             complete with exactly the text of its unbroken answer (no token twice, none
             missing), none may hang (--hang seconds), and the added latency of the streams that
             moved (those the preprocessor logged as migrated, against the median of those that
             did not) is reported.

  flock /work/bench.lock .venv/bin/python bench/routing/run.py [--part routing|migration|all]
"""
import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TURBINE = os.path.join(ROOT, 'build', 'release', 'bin', 'turbine')
TINY = os.path.join(os.path.dirname(ROOT), 'shared', 'models', 'tinystories-656k')
MODEL = 'bench'
BLOCK = 16


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def pct(v, q):
    if not v:
        return float('nan')
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(q / 100.0 * (len(v) - 1)))))]


def yaml(components, extra='', level='warn'):
    lines = ['namespace: bench', 'log:', '  level: %s' % level, 'shutdown:',
             '  grace_period: 5s']
    if extra:
        lines.append(extra)
    lines.append('components:')
    for name, plugin, cfg in components:
        lines += ['  - name: %s' % name, '    plugin: %s' % plugin, '    config:']
        lines += ['      %s: %s' % (k, json.dumps(v)) for k, v in cfg.items()]
    return '\n'.join(lines) + '\n'


class Proc:
    def __init__(self, tmp, name, text, join=None):
        self.path = os.path.join(tmp, name + '.yaml')
        self.log_path = os.path.join(tmp, name + '.log')
        with open(self.path, 'w') as f:
            f.write(text)
        cmd = [TURBINE, 'serve', self.path] + (['--join', join] if join else [])
        self.log = open(self.log_path, 'ab')
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def text(self):
        with open(self.log_path, 'rb') as f:
            return f.read().decode(errors='replace')

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.log.close()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


class Deployment:
    """A head and `n` engine worker processes; engines(i) gives worker i's component list."""

    def __init__(self, tmp, policy, engine, n=3, ttl='1s', migration_limit=3, router=None):
        self.tmp, self.engine = tmp, engine
        self.port, self.reg = free_port(), free_port()
        extra = ('registry:\n  listen: tcp://127.0.0.1:%d\n  heartbeat_interval: 200ms\n'
                 '  lease_ttl: %s' % (self.reg, ttl))
        head = yaml([('http', 'http', {'port': self.port, 'router': 'router',
                                       'max_connections': 1024}),
                     ('router', 'router', dict({'policy': policy}, **(router or {}))),
                     ('pre', 'preprocessor', {'served_model_name': MODEL, 'model': TINY,
                                              'router': 'router',
                                              'migration_limit': migration_limit})],
                    extra, level='info')
        self.head = Proc(tmp, 'head-%s' % policy, head)
        self.workers = [self.spawn(i) for i in range(n)]
        self.restarts = 0
        self.wait_engines(n)

    def spawn(self, i):
        self.restarts = getattr(self, 'restarts', 0) + 1
        return Proc(self.tmp, 'w%d-%d' % (i, self.restarts), yaml(self.engine),
                    join='tcp://127.0.0.1:%d' % self.reg)

    def routed(self):
        t = self.head.text()
        return (t.count("routing model '%s' (tokens)" % MODEL)
                - t.count('no longer routing to bench.engine.generate'))

    def wait_engines(self, n, timeout=60):
        t0 = time.monotonic()
        while self.routed() < n:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError('engines did not come up:\n' + self.head.text()[-3000:])
            time.sleep(0.1)
        time.sleep(0.5)

    def stop(self):
        for w in self.workers:
            w.stop()
        self.head.stop()


async def stream(port, prompt, max_tokens, timeout):
    """One streamed completion: dict with ttft, total, text, cached, prompt, completion, id,
    error (None when it ended well), hang (no end within `timeout`)."""
    out = {'ttft': None, 'total': None, 'text': '', 'cached': 0, 'prompt': 0,
           'completion': 0, 'id': None, 'error': None, 'hang': False}
    body = json.dumps({'model': MODEL, 'prompt': prompt, 'max_tokens': max_tokens,
                       'temperature': 0, 'stream': True,
                       'stream_options': {'include_usage': True}}).encode()
    t0 = time.perf_counter()

    async def run():
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(b'POST /v1/completions HTTP/1.1\r\nHost: b\r\nContent-Type: '
                     b'application/json\r\nContent-Length: %d\r\n\r\n' % len(body) + body)
        await writer.drain()
        head = await reader.readuntil(b'\r\n\r\n')
        status = int(head.split(b' ', 2)[1])
        if status != 200:
            out['error'] = 'status %d' % status
            writer.close()
            return
        buf = b''
        while True:
            size = int((await reader.readuntil(b'\r\n')).split(b';')[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            buf += data[:-2]
            while b'\n\n' in buf:
                ev, buf = buf.split(b'\n\n', 1)
                d = ev.decode()[len('data: '):]
                if d == '[DONE]':
                    continue
                j = json.loads(d)
                if 'error' in j:
                    out['error'] = j['error'].get('message', 'error')
                    continue
                out['id'] = out['id'] or j.get('id')
                if j.get('usage'):
                    u = j['usage']
                    out['prompt'] = u['prompt_tokens']
                    out['completion'] = u['completion_tokens']
                    out['cached'] = (u.get('prompt_tokens_details') or {}).get('cached_tokens', 0)
                for c in j.get('choices') or []:
                    if out['ttft'] is None:
                        out['ttft'] = time.perf_counter() - t0
                    out['text'] += c.get('text') or ''
        writer.close()

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        out['hang'] = True
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        out['error'] = 'client: %r' % e
    out['total'] = time.perf_counter() - t0
    return out


# ---- routing -------------------------------------------------------------------------------

def workload(args, seed):
    rng = random.Random(seed)
    systems = [[rng.randint(3, 2000) for _ in range(args.prefix)] for _ in range(args.groups)]
    reqs, t = [], 0.0
    for _ in range(args.requests):
        t += rng.expovariate(args.rate)
        g = rng.randrange(args.groups)
        reqs.append((t, g, systems[g] + [rng.randint(3, 2000) for _ in range(args.suffix)]))
    return reqs


def ideal_hits(reqs, prefix):
    """Prompt tokens an ideal router with unbounded caches finds cached: every full block of the
    system prompt once it has been seen (an engine always computes the prompt's last token)."""
    seen, hits = set(), 0
    for _, g, p in reqs:
        if g in seen:
            hits += (min(prefix, len(p) - 1) // BLOCK) * BLOCK
        seen.add(g)
    return hits


async def drive(port, reqs, max_tokens, timeout):
    t0 = time.perf_counter()

    async def one(at, prompt):
        await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
        return await stream(port, prompt, max_tokens, timeout)

    res = await asyncio.gather(*[one(at, p) for at, _, p in reqs])
    return res, time.perf_counter() - t0


def routing_phase(args, tmp, variant, engine, reqs, max_tokens):
    """`variant`: a policy, or 'kv_aware:W' for kv_aware with kv_prefill_weight W."""
    policy, _, weight = variant.partition(':')
    d = Deployment(tmp, policy, engine,
                   router={'kv_prefill_weight': float(weight)} if weight else None)
    try:
        res, wall = asyncio.run(drive(d.port, reqs, max_tokens, args.hang))
    finally:
        d.stop()
    ok = [r for r in res if not r['error'] and not r['hang']]
    prompt = sum(r['prompt'] for r in ok)
    return {
        'policy': variant,
        'requests': len(res),
        'failed': len(res) - len(ok),
        'hit_rate': sum(r['cached'] for r in ok) / prompt if prompt else float('nan'),
        'ttft_p50_ms': 1000 * pct([r['ttft'] for r in ok if r['ttft']], 50),
        'ttft_p99_ms': 1000 * pct([r['ttft'] for r in ok if r['ttft']], 99),
        'req_per_s': len(ok) / wall,
        'tok_per_s': sum(r['completion'] for r in ok) / wall,
    }


def mock_engine(args):
    return [('engine', 'mock', {'served_model_name': MODEL, 'kind': 'tokens',
                                'token_id_min': 3, 'token_id_max': 2000, 'ttft': '2ms',
                                'itl': '%gms' % args.itl_ms, 'output_tokens': args.output,
                                'prefill_per_token': '%gms' % args.prefill_ms,
                                'kv_blocks': args.kv_blocks, 'kv_block_size': BLOCK})]


def cpu_engine():
    return [('engine', 'engine_cpu', {'served_model_name': MODEL, 'model': TINY,
                                      'kv_cache': '16MiB', 'threads': 1, 'block_size': BLOCK})]


def report_routing(title, rows, ideal_rate):
    print('\n%s (ideal hit rate %.3f)' % (title, ideal_rate))
    print('%-13s %8s %9s %9s %11s %11s %8s %8s' % ('policy', 'requests', 'hit rate', '/ideal',
                                                   'TTFT p50 ms', 'TTFT p99 ms', 'req/s',
                                                   'tok/s'))
    for r in rows:
        print('%-13s %8d %9.3f %9.3f %11.1f %11.1f %8.2f %8.1f%s'
              % (r['policy'], r['requests'], r['hit_rate'], r['hit_rate'] / ideal_rate,
                 r['ttft_p50_ms'], r['ttft_p99_ms'], r['req_per_s'], r['tok_per_s'],
                 '  (%d failed)' % r['failed'] if r['failed'] else ''))


def routing(args, tmp):
    kv = ['kv_aware:%g' % w for w in args.prefill_weights]
    policies = kv + ['round_robin', 'least_loaded']
    reqs = workload(args, args.seed)
    ideal = ideal_hits(reqs, args.prefix) / sum(len(p) for _, _, p in reqs)
    rows = []
    for rnd in range(args.rounds):
        for pol in (policies if rnd % 2 == 0 else policies[::-1]):
            rows.append(routing_phase(args, tmp, pol, mock_engine(args), reqs, args.output))
            dict.update(rows[-1], round=rnd)
    report_routing('routing, mock engines (prefill %g ms/token, %d groups x %d tokens + %d, '
                   '%d requests at %g/s)' % (args.prefill_ms, args.groups, args.prefix,
                                             args.suffix, args.requests, args.rate),
                   rows, ideal)
    pairs = {}
    for rnd in range(args.rounds):
        by = {r['policy']: r for r in rows if r['round'] == rnd}
        for k in kv:
            for base in ('round_robin', 'least_loaded'):
                pairs.setdefault('%s / %s' % (k, base), []).append(
                    by[k]['ttft_p50_ms'] / by[base]['ttft_p50_ms'])
    for name, v in pairs.items():
        print('TTFT p50 %s: median %.3f (range %.3f..%.3f over %d rounds)'
              % (name, statistics.median(v), min(v), max(v), len(v)))
    result = {'mock': rows, 'ideal_hit_rate': ideal, 'ttft_p50_ratio': pairs}
    if args.cpu:
        small = argparse.Namespace(**vars(args))
        small.requests, small.rate, small.groups = args.cpu_requests, args.cpu_rate, 4
        small.prefix, small.suffix = 256, 16
        creqs = workload(small, args.seed + 1)
        cideal = ideal_hits(creqs, small.prefix) / sum(len(p) for _, _, p in creqs)
        crows = [routing_phase(args, tmp, pol, cpu_engine(), creqs, 8)
                 for pol in (kv[-1], 'round_robin')]
        report_routing('routing, CPU engines on tinystories-656k (%d requests at %g/s)'
                       % (small.requests, small.rate), crows, cideal)
        result.update(cpu=crows, cpu_ideal_hit_rate=cideal)
    return result


# ---- migration -----------------------------------------------------------------------------

def migration(args, tmp):
    rng = random.Random(args.seed)
    prompts = [[rng.randint(3, 2000) for _ in range(48)] for _ in range(24)]
    engine = mock_engine(argparse.Namespace(**dict(vars(args), prefill_ms=0.02,
                                                   output=args.mig_output)))
    d = Deployment(tmp, 'kv_aware', engine)
    try:
        async def references():
            return await asyncio.gather(*[stream(d.port, p, args.mig_output, args.hang)
                                          for p in prompts])

        refs = asyncio.run(references())
        bad = [r for r in refs if r['error'] or r['hang']]
        if bad:
            raise RuntimeError('reference answers failed: %r' % bad[:2])
        kills = {'n': 0}

        async def killer():
            while kills['n'] < args.kills:
                await asyncio.sleep(args.kill_every)
                i = rng.randrange(len(d.workers))
                d.workers[i].kill()
                kills['n'] += 1
                d.workers[i] = d.spawn(i)  # restarted at once; it joins in well under a second

        async def load(stop):
            results = []

            async def client(k):
                j = k
                while not stop.is_set():
                    i = j % len(prompts)
                    j += args.streams
                    r = await stream(d.port, prompts[i], args.mig_output, args.hang)
                    r['ref'] = i
                    results.append(r)

            tasks = [asyncio.ensure_future(client(k)) for k in range(args.streams)]
            await stop.wait()
            await asyncio.gather(*tasks)
            return results

        async def main():
            stop = asyncio.Event()
            lt = asyncio.ensure_future(load(stop))
            await killer()
            await asyncio.sleep(args.kill_every)
            stop.set()
            return await lt

        t0 = time.monotonic()
        results = asyncio.run(main())
        wall = time.monotonic() - t0
        moved_ids = set(re.findall(r"request '([^']+)': the stream from instance",
                                   d.head.text()))
    finally:
        d.stop()
    done = [r for r in results if not r['error'] and not r['hang']]
    wrong = [r for r in done if r['text'] != refs[r['ref']]['text']
             or r['completion'] != refs[r['ref']]['completion']]
    moved = [r for r in done if r['id'] in moved_ids]
    still = [r['total'] for r in done if r['id'] not in moved_ids]
    base = statistics.median(still) if still else float('nan')
    added = [r['total'] - base for r in moved]
    res = {
        'kills': kills['n'], 'wall_s': wall, 'streams': len(results), 'completed': len(done),
        'errors': sum(1 for r in results if r['error']),
        'hangs': sum(1 for r in results if r['hang']),
        'not_identical': len(wrong), 'migrated': len(moved),
        'unbroken_total_p50_ms': 1000 * base,
        'added_p50_ms': 1000 * pct(added, 50), 'added_p99_ms': 1000 * pct(added, 99),
        'error_samples': [r['error'] for r in results if r['error']][:3],
    }
    print('\nmigration under faults: %d SIGKILLs (one every %g s, each engine restarted at '
          'once), %d concurrent streams of %d tokens, lease TTL 1 s, %.0f s'
          % (res['kills'], args.kill_every, args.streams, args.mig_output, wall))
    print('streams %d, completed %d, errors %d, hangs %d, text or usage not identical to the '
          'unbroken answer %d' % (res['streams'], res['completed'], res['errors'],
                                  res['hangs'], res['not_identical']))
    print('migrated streams %d: added latency p50 %.0f ms, p99 %.0f ms (against the unbroken '
          'streams\' median total of %.0f ms)' % (res['migrated'], res['added_p50_ms'],
                                                 res['added_p99_ms'], res['unbroken_total_p50_ms']))
    if res['error_samples']:
        print('errors, first ones: %r' % res['error_samples'])
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--part', choices=['routing', 'migration', 'all'], default='all')
    ap.add_argument('--groups', type=int, default=8)
    ap.add_argument('--prefix', type=int, default=512)
    ap.add_argument('--suffix', type=int, default=32)
    ap.add_argument('--requests', type=int, default=300)
    ap.add_argument('--rate', type=float, default=40.0, help='arrivals per second (Poisson)')
    ap.add_argument('--output', type=int, default=16, help='tokens per answer')
    ap.add_argument('--itl-ms', type=float, default=5.0)
    ap.add_argument('--prefill-ms', type=float, default=0.1, help='per uncached prompt token')
    ap.add_argument('--kv-blocks', type=int, default=128,
                    help="each mock's cache (the 8 x 512-token prefixes take 256 blocks of 16)")
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--prefill-weights', type=lambda v: [float(x) for x in v.split(',')],
                    default=[1.0, 4.0],
                    help="the router's kv_prefill_weight values kv_aware runs with")
    ap.add_argument('--cpu', action='store_true', help='also a short run on the CPU engine')
    ap.add_argument('--cpu-requests', type=int, default=40)
    ap.add_argument('--cpu-rate', type=float, default=2.0)
    ap.add_argument('--kills', type=int, default=100)
    ap.add_argument('--kill-every', type=float, default=1.0)
    ap.add_argument('--streams', type=int, default=12)
    ap.add_argument('--mig-output', type=int, default=64)
    ap.add_argument('--hang', type=float, default=60.0, help='a stream longer than this hangs')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--json', help='write the figures here')
    args = ap.parse_args()
    if not os.path.exists(TURBINE):
        sys.exit('build first: scons -Q -j2 (no %s)' % TURBINE)
    out = {}
    with tempfile.TemporaryDirectory(prefix='tb-bench-routing-') as tmp:
        if args.part in ('routing', 'all'):
            out['routing'] = routing(args, tmp)
        if args.part in ('migration', 'all'):
            out['migration'] = migration(args, tmp)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)
    m = out.get('migration')
    if m and (m['hangs'] or m['errors'] or m['not_identical']):
        sys.exit(1)


if __name__ == '__main__':
    main()
