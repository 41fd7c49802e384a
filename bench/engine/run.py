#!/usr/bin/env python3
"""Turbine's engine benchmark against llama.cpp, in one run (see bench/README.md).

  .venv/bin/python bench/engine/run.py            # everything (tens of minutes on 2 cores)
  .venv/bin/python bench/engine/run.py --quick    # 15m and 110m, q8_0, short serving run

1. Writes the GGUF files (tools/tb_make_model.py; presets 15m, 110m, 1b and the mixture of experts
   moe1b (Mixtral-style, 8 experts, top-2, 1.1B parameters); f32, f16, q8_0, q4_0) into
   $TB_BENCH_DIR/models (default /tmp/tb-bench), reusing those already there; the llama.cpp
   types (--dtypes q4_k_m,q5_k_m,q6_k,q3_k_m,iq4_xs,q4_0_lq) come from llama-quantize run on
   the f16 file.
2. Measures the memory-read bandwidth (build/<mode>/bench/bench_membw).
3. Per file: prefill (pp) and decode (tg) tokens/s of our engine (build/<mode>/bench/bench_engine)
   and of llama.cpp's llama-bench, same threads, sizes and repetitions, one repetition of each
   in turn (A B A B: ratios per pair are printed too); decode GB/s and % of the bandwidth;
   optionally decode of B sequences at once (ours, llama-batched-bench); our resident memory
   after the runs against the file size.
4. Serving: `turbine serve bench/engine/serve.yaml` and `llama-server` on the same file with the
   same parallel sequences and threads, driven by bench/engine/serve_client.py at 1, 4 and 16
   concurrent streams; total output tokens/s, TTFT and ITL percentiles, ratios.
Prints tables (markdown) and writes every figure to $TB_BENCH_DIR/results-<time>.json.
LLAMA_CPP_DIR (default /work/peers/llama.cpp/build/bin) locates llama-bench, llama-batched-bench
and llama-server; without them only ours is measured.  TB_BUILD (default build/release) locates
our binaries.  Figures only: nothing here asserts a speed.
"""
import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

SIZES = ['15m', '110m', '1b', 'moe1b']
DTYPES = ['f32', 'f16', 'q8_0', 'q4_0']
# Made by llama.cpp's llama-quantize from the f16 file (LLAMA_CPP_DIR), with its default recipes:
# the files users download.  Not in the default run.
QUANTIZED = ['q4_k_m', 'q5_k_m', 'q6_k', 'q3_k_m', 'iq4_xs', 'q4_0_lq']
ALL_DTYPES = DTYPES + QUANTIZED
# Parameters per preset (for the memory check before writing a file).
PARAMS = {'15m': 15.2e6, '110m': 110e6, '1b': 1.1e9, 'moe1b': 1.11e9}
BYTES_PER_PARAM = {'f32': 4.0, 'f16': 2.0, 'q8_0': 34 / 32, 'q4_0': 18 / 32}


def log(msg):
    sys.stderr.write('[bench] %s\n' % msg)
    sys.stderr.flush()


def mem_available():
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_info(llama_dir):
    info = {'platform': platform.platform(), 'python': platform.python_version()}
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            k, _, v = line.partition(':')
            if k.strip() in ('Model name', 'CPU(s)', 'Thread(s) per core', 'L3 cache', 'Flags'):
                v = v.strip()
                if k.strip() == 'Flags':
                    v = ' '.join(f for f in v.split() if f in (
                        'avx2', 'fma', 'f16c', 'avx512f', 'avx512_bf16', 'avx512_vnni'))
                info[k.strip()] = v
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open('/proc/meminfo') as f:
            info['MemTotal'] = f.readline().split(':')[1].strip()
    except OSError:
        pass
    info['loadavg_start'] = os.getloadavg()
    info['llama_cpp_dir'] = llama_dir
    return info


# ---------------------------------------------------------------------------------------------
# models

def model_path(bench_dir, size, dtype):
    return os.path.join(bench_dir, 'models', '%s-%s.gguf' % (size, dtype))


def quantized_model(bench_dir, size, dtype, python, llama_dir):
    """The f16 file of `size` through llama-quantize to `dtype` (q4_0_lq: its Q4_0 recipe)."""
    path = model_path(bench_dir, size, dtype)
    if os.path.exists(path):
        return path
    exe = os.path.join(llama_dir, 'llama-quantize')
    if not os.path.exists(exe):
        log('skipping %s %s: %s is absent (set LLAMA_CPP_DIR)' % (size, dtype, exe))
        return None
    src = ensure_model(bench_dir, size, 'f16', python)
    if not src:
        return None
    # a name without a type in it: llama-quantize takes an output name that parses as a type
    # for the type itself
    tmp = os.path.join(os.path.dirname(path), 'quantize-%d.tmp' % os.getpid())
    kind = 'Q4_0' if dtype == 'q4_0_lq' else dtype.upper()
    log('llama-quantize %s %s' % (src, kind))
    r = subprocess.run([exe, src, tmp, kind, '2'], capture_output=True, text=True)
    if r.returncode != 0:
        log('llama-quantize failed for %s %s: %s' % (size, dtype, r.stderr.strip()[-500:]))
        return None
    os.replace(tmp, path)
    return path


def ensure_model(bench_dir, size, dtype, python, llama_dir=None):
    if dtype in QUANTIZED:
        return quantized_model(bench_dir, size, dtype, python, llama_dir or '')
    path = model_path(bench_dir, size, dtype)
    if os.path.exists(path):
        return path
    need = PARAMS[size] * (4.0 + BYTES_PER_PARAM[dtype]) * 1.3  # f32 weights + the output
    if mem_available() < need:
        log('skipping %s %s: writing it needs about %.1f GB of memory, %.1f GB available'
            % (size, dtype, need / 1e9, mem_available() / 1e9))
        return None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.part.gguf'
    log('writing %s' % path)
    cmd = [python, os.path.join(ROOT, 'tools', 'tb_make_model.py'), '--preset', size,
           '--format', 'gguf', '--dtype', dtype, '--name', 'bench-%s' % size, '--out', tmp]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        log('tb_make_model failed for %s %s: %s' % (size, dtype, r.stderr.strip()[-500:]))
        return None
    os.replace(tmp, path)
    return path


def weight_bytes_per_token(path):
    """Bytes of weights a decode step reads: every matrix once (the output head included), of
    the token embedding one row unless it is also the output head.  Same rule as bench_engine.
    Of a mixture of experts' 3-D expert tensors, the share of the experts a token uses."""
    import gguf
    r = gguf.GGUFReader(path)
    arch = bytes(r.fields['general.architecture'].parts[-1]).decode()
    used = r.fields.get('%s.expert_used_count' % arch)
    count = r.fields.get('%s.expert_count' % arch)
    share = float(used.parts[-1][0]) / float(count.parts[-1][0]) if used and count else 1.0
    names = {t.name: t for t in r.tensors}
    total = per_tok = 0
    embd = names.get('token_embd.weight')
    tied = 'output.weight' not in names
    for t in r.tensors:
        nb = int(t.n_bytes)
        total += nb
        if len([d for d in t.shape if d > 1]) < 2:
            continue
        if t is embd:
            per_tok += nb // int(t.shape[-1])  # the looked-up row of the [vocab, hidden] table
            if tied:
                per_tok += nb  # and all of it as the output head
        elif t.name.endswith('_exps.weight'):
            per_tok += int(nb * share)  # a token's top-k experts
        else:
            per_tok += nb
    return total, per_tok


# ---------------------------------------------------------------------------------------------
# raw speed

def run_json_lines(cmd, timeout):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError('%s exited %d: %s' % (os.path.basename(cmd[0]), r.returncode,
                                                 r.stderr.strip()[-800:]))
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{')]


def bandwidth(build, threads):
    """The best memory-read GB/s seen with `threads` threads (20 rounds of 512 MiB) and with one
    (10 rounds): on a shared machine other work takes cores and memory bandwidth, so the best
    round is the closest to what the hardware gives; run.py measures at the start, beside every
    model and at the end, and keeps the best."""
    exe = os.path.join(build, 'bench', 'bench_membw')
    if not os.path.exists(exe):
        log('%s is absent: run scons -Q -j2 first' % exe)
        return None
    runs = [run_json_lines([exe, '-t', str(threads), '-r', '20', '-m', '512'], 600)[0]]
    if threads > 1:
        runs.append(run_json_lines([exe, '-t', '1', '-r', '10', '-m', '512'], 600)[0])
    best = max(runs, key=lambda r: r['gbs'])
    return {'gbs': best['gbs'], 'threads': best['threads'], 'runs': runs}


def ours_speed(build, path, a, reps=None):
    exe = os.path.join(build, 'bench', 'bench_engine')
    cmd = [exe, '-m', path, '-t', str(a.threads), '-p', str(a.pp), '-n', str(a.tg),
           '-r', str(reps or a.reps), '-B', ','.join(str(b) for b in [1] + a.batch)]
    lines = run_json_lines(cmd, 3600)
    out = {'info': lines[0]}
    for ln in lines[1:]:
        if ln['test'] == 'mem':
            out['mem'] = ln
        elif ln['test'] == 'pp':
            out['pp'] = ln['best_tok_s']
        elif ln['batch'] == 1:
            out['tg'] = ln['best_tok_s']
        else:
            out['tg_b%d' % ln['batch']] = ln['best_tok_s']
    out['raw'] = lines[1:]
    return out


def llama_speed(llama_dir, path, a, reps=None):
    exe = os.path.join(llama_dir, 'llama-bench')
    cmd = [exe, '-m', path, '-t', str(a.threads), '-p', str(a.pp), '-n', str(a.tg),
           '-r', str(reps or a.reps), '-o', 'json']
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError('llama-bench exited %d: %s' % (r.returncode, r.stderr.strip()[-800:]))
    out = {'raw': json.loads(r.stdout)}
    for t in out['raw']:
        best = max(t['samples_ts'])
        if t['n_prompt'] > 0 and t['n_gen'] == 0:
            out['pp'] = best
        elif t['n_gen'] > 0 and t['n_prompt'] == 0:
            out['tg'] = best
    for b in a.batch:
        exe = os.path.join(llama_dir, 'llama-batched-bench')
        if not os.path.exists(exe):
            break
        cmd = [exe, '-m', path, '-t', str(a.threads), '-c', str(b * (a.tg + 16)), '-npp', '1',
               '-ntg', str(a.tg), '-npl', str(b), '--output-format', 'jsonl']
        best = 0.0
        for _ in range(reps or a.reps):
            rr = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            for line in rr.stdout.splitlines():
                if line.startswith('{') and '"speed_tg"' in line:
                    best = max(best, json.loads(line)['speed_tg'])
        out['tg_b%d' % b] = best or None
    return out


SPEED_KEYS = ('pp', 'tg')


def alternate(row, a, build, llama_dir, path, have_ours, have_llama):
    """Ours and llama.cpp one repetition each, in turn (A B A B ...), so that both see the same
    moments of a shared machine: row['ours'] / row['llama'] hold the best of each figure, and
    row['pairs'] the ratio of each repetition's pair."""
    runs = {'ours': [], 'llama': []}
    for rep in range(a.reps):
        for who, ok, fn, where in (('ours', have_ours, ours_speed, build),
                                   ('llama', have_llama, llama_speed, llama_dir)):
            if not ok or row.get(who + '_error'):
                continue
            log('%s: %s %s (repetition %d of %d)' % (who, row['size'], row['dtype'], rep + 1,
                                                      a.reps))
            try:
                runs[who].append(fn(where, path, a, reps=1))
            except (RuntimeError, subprocess.TimeoutExpired) as ex:
                row[who + '_error'] = str(ex)
                log('%s failed: %s' % (who, ex))
    keys = list(SPEED_KEYS) + ['tg_b%d' % b for b in a.batch]
    for who, rs in runs.items():
        if not rs:
            continue
        best = {k: max((r.get(k) or 0.0) for r in rs) or None for k in keys}
        best['raw'] = [r.get('raw') for r in rs]
        if who == 'ours':
            best['info'] = rs[0].get('info')
            mems = [r['mem'] for r in rs if r.get('mem')]
            best['mem'] = max(mems, key=lambda m: m['rss_bytes']) if mems else None
        row[who] = best
    pairs = {}
    for k in keys:
        rs = [o[k] / l[k] for o, l in zip(runs['ours'], runs['llama']) if o.get(k) and l.get(k)]
        if rs:
            pairs[k] = {'median': statistics.median(rs), 'min': min(rs), 'max': max(rs),
                        'all': rs}
    row['pairs'] = pairs


# ---------------------------------------------------------------------------------------------
# serving

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_ready(url, proc, timeout):
    """True once GET /v1/models lists a model; False if the process dies or time runs out."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + '/v1/models', timeout=2) as r:
                body = json.loads(r.read())
                if r.status == 200 and body.get('data'):
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.3)
    return False


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_levels(name, cmd, env, port, a, logf):
    """Starts one server, drives every concurrency level, stops it; a dict per level."""
    url = 'http://127.0.0.1:%d' % port
    with open(logf, 'w') as lf:
        proc = subprocess.Popen(cmd, env=env, stdout=lf, stderr=subprocess.STDOUT,
                                start_new_session=True)
    from serve_client import run_level
    try:
        if not wait_ready(url, proc, 300):
            raise RuntimeError('%s did not become ready (log: %s)' % (name, logf))
        # Warm-up (not counted): pages the weights in, fills the slots once.
        asyncio.run(run_level(url, 'bench', min(4, max(a.concurrency)), min(4, max(a.concurrency)),
                              a.serve_prompt, 8, 32000, seed=999))
        out = {}
        for c in a.concurrency:
            n = max(c * a.waves, 4 if c == 1 else c)
            log('  %s: %d streams, %d requests' % (name, c, n))
            out[c] = asyncio.run(run_level(url, 'bench', c, n, a.serve_prompt, a.serve_out,
                                           32000, seed=c))
            if out[c]['errors']:
                log('  %s: %d errors, first: %s' % (name, out[c]['errors'],
                                                     out[c]['first_error']))
        return out
    finally:
        stop(proc)


def serving(a, build, llama_dir, bench_dir, size, dtype):
    path = model_path(bench_dir, size, dtype)
    res = {}
    turbine = os.path.join(build, 'bin', 'turbine')
    plugins = [os.path.join(build, 'plugins', 'tb_%s.so' % p)
               for p in ('http', 'preprocessor', 'engine_cpu')]
    missing = [p for p in [turbine] + plugins if not os.path.exists(p)]
    if missing:
        res['ours_missing'] = 'not built: ' + ', '.join(os.path.relpath(m, ROOT) for m in missing)
        log('ours: %s' % res['ours_missing'])
    else:
        port = free_port()
        env = dict(os.environ, TB_BENCH_PORT=str(port), TB_BENCH_MODEL=path,
                   TB_BENCH_SEQS=str(a.slots), TB_BENCH_THREADS=str(a.threads))
        cmd = [turbine, 'serve', os.path.join(HERE, 'serve.yaml')]
        try:
            res['ours'] = serve_levels('turbine', cmd, env, port, a,
                                       os.path.join(bench_dir, 'turbine-%s-%s.log' % (size, dtype)))
        except RuntimeError as ex:
            res['ours_missing'] = str(ex)
            log('ours: %s' % ex)
    server = os.path.join(llama_dir, 'llama-server')
    if os.path.exists(server):
        port = free_port()
        ctx = a.slots * (a.serve_prompt + a.serve_out + 64)
        cmd = [server, '-m', path, '-t', str(a.threads), '-np', str(a.slots), '-c', str(ctx),
               '--host', '127.0.0.1', '--port', str(port), '--no-webui']
        try:
            res['llama'] = serve_levels('llama-server', cmd, dict(os.environ), port, a,
                                        os.path.join(bench_dir, 'llama-server-%s-%s.log'
                                                     % (size, dtype)))
        except RuntimeError as ex:
            res['llama_missing'] = str(ex)
            log('llama-server: %s' % ex)
    return res


# ---------------------------------------------------------------------------------------------
# tables

def fmt(v, nd=1):
    return '-' if v is None else ('%.*f' % (nd, v))


def ratio(a, b):
    return '-' if not a or not b else '%.2f' % (a / b)


def speed_table(rows, bw, a):
    gbs = bw['gbs'] if bw else None
    cols = ['model', 'dtype', 'MB', 'ours pp%d' % a.pp, 'llama pp%d' % a.pp, 'pp ratio',
            'ours tg%d' % a.tg, 'llama tg%d' % a.tg, 'tg ratio', 'ours GB/s', 'ours % bw',
            'llama GB/s', 'llama % bw']
    for b in a.batch:
        cols += ['ours tg b%d' % b, 'llama tg b%d' % b, 'b%d ratio' % b]
    cols += ['ours RSS MB', 'RSS / file']
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in rows:
        o, l = r.get('ours') or {}, r.get('llama') or {}
        mem = o.get('mem') or {}
        wb = r['weight_bytes_per_token']
        og = o.get('tg') * wb / 1e9 if o.get('tg') else None
        lg = l.get('tg') * wb / 1e9 if l.get('tg') else None
        # Against the run's best bandwidth: one measurement beside the row samples a moment, and
        # decode (best of its repetitions) may have run in a better one.
        rbw = gbs
        cells = [r['size'], r['dtype'], '%.0f' % (r['file_bytes'] / 1e6),
                 fmt(o.get('pp')), fmt(l.get('pp')), ratio(o.get('pp'), l.get('pp')),
                 fmt(o.get('tg')), fmt(l.get('tg')), ratio(o.get('tg'), l.get('tg')),
                 fmt(og), fmt(100 * og / rbw if og and rbw else None),
                 fmt(lg), fmt(100 * lg / rbw if lg and rbw else None)]
        for b in a.batch:
            k = 'tg_b%d' % b
            cells += [fmt(o.get(k)), fmt(l.get(k)), ratio(o.get(k), l.get(k))]
        cells += [fmt(mem['rss_bytes'] / 1e6, 0) if mem else '-',
                  fmt(mem['rss_bytes'] / r['file_bytes'], 2) if mem else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def pairs_table(rows, a):
    """Ours / llama.cpp per alternated pair of repetitions: median [lowest - highest]."""
    keys = list(SPEED_KEYS) + ['tg_b%d' % b for b in a.batch]
    names = {'pp': 'pp%d' % a.pp, 'tg': 'tg%d' % a.tg}
    cols = ['model', 'dtype'] + [names.get(k, k.replace('_', ' ')) for k in keys] + ['load']
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in rows:
        p = r.get('pairs') or {}
        cells = [r['size'], r['dtype']]
        for k in keys:
            v = p.get(k)
            cells.append('-' if not v else '%.2f [%.2f-%.2f]' % (v['median'], v['min'], v['max']))
        cells.append(fmt(r.get('loadavg')))  # 1-minute load average as the row started
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def serving_table(size, dtype, res):
    cols = ['streams', 'ours tok/s', 'llama tok/s', 'ratio', 'ours TTFT p50/p99 ms',
            'llama TTFT p50/p99 ms', 'TTFT p99 ratio', 'ours ITL p50/p99 ms',
            'llama ITL p50/p99 ms']
    lines = ['%s %s' % (size, dtype), '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    # concurrency keys are ints in a run and strings in a saved file
    ours = {int(k): v for k, v in (res.get('ours') or {}).items()}
    llama = {int(k): v for k, v in (res.get('llama') or {}).items()}
    for c in sorted(set(ours) | set(llama)):
        o, l = ours.get(c) or {}, llama.get(c) or {}

        def pair(d, k):
            return '-' if not d else '%s / %s' % (fmt(d['%s_p50_ms' % k]), fmt(d['%s_p99_ms' % k]))
        lines.append('| ' + ' | '.join([
            str(c), fmt(o.get('output_tok_s')), fmt(l.get('output_tok_s')),
            ratio(o.get('output_tok_s'), l.get('output_tok_s')), pair(o, 'ttft'), pair(l, 'ttft'),
            ratio(o.get('ttft_p99_ms'), l.get('ttft_p99_ms')), pair(o, 'itl'), pair(l, 'itl')])
            + ' |')
    for k in ('ours_missing', 'llama_missing'):
        if res.get(k):
            lines.append('\n%s: %s' % (k.split('_')[0], res[k]))
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------

def print_report(results, a):
    """Prints the tables of a results dict (a run's, or one loaded by --report)."""
    bw = results.get('bandwidth_best') or results.get('bandwidth')
    m = results['machine']
    print('# Turbine engine benchmark\n')
    print('machine: %s, %s CPUs, %s; load average at start %s, at end %s'
          % (m.get('Model name'), m.get('CPU(s)'), m.get('MemTotal'),
             '/'.join('%.1f' % x for x in m['loadavg_start']),
             '/'.join('%.1f' % x for x in m['loadavg_end'])))
    if bw:
        lo = results.get('bandwidth_range', [bw['gbs']])[0]
        print('memory-read bandwidth: %.1f GB/s (the best round of %d thread(s) over the run; '
              'the best of one measurement was as low as %.1f GB/s)\n'
              % (bw['gbs'], bw['threads'], lo))
    if results['speed']:
        print('tokens/s, best of %d (ours and llama.cpp alternated), %d threads; GB/s = decode tok/s x weight bytes per token; '
              '%% bw: of the best bandwidth of the run\n' % (a.reps, a.threads))
        print(speed_table(results['speed'], bw, a))
        print()
        if any(r.get('pairs') for r in results['speed']):
            print('ours / llama.cpp per alternated pair of repetitions: median [range]\n')
            print(pairs_table(results['speed'], a))
            print()
    for k, res in results['serving'].items():
        size, dtype = k.split(':')
        print('serving: %d-token prompts, %d tokens out, %d slots, %d threads\n'
              % (a.serve_prompt, a.serve_out, a.slots, a.threads))
        print(serving_table(size, dtype, res))
        print()


def parse_list(s, allowed=None, conv=str):
    vals = [conv(x) for x in s.split(',') if x]
    if allowed:
        bad = [v for v in vals if v not in allowed]
        if bad:
            raise SystemExit('run.py: unknown %s (choose from %s)' % (bad, ', '.join(allowed)))
    return vals


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sizes', default=','.join(SIZES), help='15m,110m,1b,moe1b')
    ap.add_argument('--rows', default='',
                    help='size:dtype pairs measured instead of every --sizes x --dtypes pair, '
                         'e.g. 1b:q4_k_m,1b:f16,moe1b:q4_k_m')
    ap.add_argument('--dtypes', default=','.join(DTYPES),
                    help='f32,f16,q8_0,q4_0 (ours); q4_k_m,q5_k_m,q6_k,q3_k_m,iq4_xs,q4_0_lq '
                    '(llama-quantize from the f16 file)')
    ap.add_argument('--quick', action='store_true',
                    help='15m and 110m q8_0, 2 repetitions, serving 110m q8_0 at 1 and 4 streams')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--pp', type=int, default=64, help='prompt tokens of the prefill test')
    ap.add_argument('--tg', type=int, default=32, help='tokens of the decode test')
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--batch', default='16',
                    help='also decode B sequences at once (comma list; empty: none)')
    ap.add_argument('--no-speed', action='store_true', help='skip the pp/tg table')
    ap.add_argument('--no-serving', action='store_true', help='skip the serving comparison')
    ap.add_argument('--serve-models', default='110m:f16,1b:q4_0',
                    help='size:dtype pairs for the serving comparison')
    ap.add_argument('--concurrency', default='1,4,16')
    ap.add_argument('--slots', type=int, default=16, help='parallel sequences of both servers')
    ap.add_argument('--serve-prompt', type=int, default=64)
    ap.add_argument('--serve-out', type=int, default=128)
    ap.add_argument('--waves', type=int, default=2,
                    help='requests per level = waves x streams (at least 4)')
    ap.add_argument('--report', metavar='RESULTS.json',
                    help='print the tables of a saved run and exit (measures nothing)')
    a = ap.parse_args()
    if a.report:
        with open(a.report) as f:
            results = json.load(f)
        saved = argparse.Namespace(**results['options'])
        saved.batch = results['options'].get('batch') or []
        print_report(results, saved)
        return 0
    if a.quick:
        a.sizes, a.dtypes, a.reps = '15m,110m', 'q8_0', 2
        a.serve_models, a.concurrency, a.waves, a.batch = '110m:q8_0', '1,4', 1, ''
    sizes = parse_list(a.sizes, SIZES)
    dtypes = parse_list(a.dtypes, ALL_DTYPES)
    a.batch = parse_list(a.batch, conv=int) if a.batch else []
    a.concurrency = parse_list(a.concurrency, conv=int)
    serve_models = [tuple(x.split(':')) for x in a.serve_models.split(',') if x]

    bench_dir = os.environ.get('TB_BENCH_DIR', '/tmp/tb-bench')
    build = os.environ.get('TB_BUILD', os.path.join(ROOT, 'build', 'release'))
    if not os.path.isabs(build):
        build = os.path.join(ROOT, build)
    llama_dir = os.environ.get('LLAMA_CPP_DIR', '/work/peers/llama.cpp/build/bin')
    have_llama = os.path.exists(os.path.join(llama_dir, 'llama-bench'))
    if not have_llama:
        log('llama.cpp not found in %s (set LLAMA_CPP_DIR): measuring ours alone' % llama_dir)
    have_ours = os.path.exists(os.path.join(build, 'bench', 'bench_engine'))
    if not have_ours:
        log('%s/bench/bench_engine is absent (it is built once the CPU backend, '
            'plugins/engine/cpu/tb_cpu_backend.c, is in the tree): measuring llama.cpp alone'
            % build)
    os.makedirs(bench_dir, exist_ok=True)
    python = sys.executable

    results = {'machine': machine_info(llama_dir), 'options': vars(a).copy(), 'speed': [],
               'serving': {}}
    results['options']['batch'] = a.batch
    bw = bandwidth(build, a.threads)
    results['bandwidth'] = bw
    bw_seen = [bw] if bw else []
    if bw:
        log('memory-read bandwidth: %.1f GB/s' % bw['gbs'])

    rows = [(size, dtype) for size in sizes for dtype in dtypes]
    if a.rows:
        rows = [tuple(x.split(':')) for x in a.rows.split(',') if x]
        bad = [r for r in rows if len(r) != 2 or r[0] not in SIZES or r[1] not in ALL_DTYPES]
        if bad:
            raise SystemExit('run.py: --rows takes size:dtype pairs (%s)' % bad)
    if not a.no_speed:
        for size, dtype in rows:
            path = ensure_model(bench_dir, size, dtype, python, llama_dir)
            if not path:
                continue
            total, per_tok = weight_bytes_per_token(path)
            row = {'size': size, 'dtype': dtype, 'file': path,
                   'file_bytes': os.path.getsize(path), 'tensor_bytes': total,
                   'weight_bytes_per_token': per_tok, 'loadavg': os.getloadavg()[0]}
            # The bandwidth this machine gives moves with other work on it (and on its
            # host): sample it beside every row and keep the best seen as the ceiling.
            if bw:
                row['bandwidth'] = bandwidth(build, a.threads)
                bw_seen.append(row['bandwidth'])
            alternate(row, a, build, llama_dir, path, have_ours, have_llama)
            results['speed'].append(row)

    if not a.no_serving:
        for size, dtype in serve_models:
            if not ensure_model(bench_dir, size, dtype, python, llama_dir):
                continue
            log('serving: %s %s' % (size, dtype))
            results['serving']['%s:%s' % (size, dtype)] = serving(a, build, llama_dir, bench_dir,
                                                                  size, dtype)

    bw_end = bandwidth(build, a.threads) if bw else None
    results['bandwidth_end'] = bw_end
    if bw_end:
        bw_seen.append(bw_end)
    bw = max(bw_seen, key=lambda r: r['gbs']) if bw_seen else None
    results['bandwidth_best'] = bw
    if bw:
        log('memory-read bandwidth, best of %d measurements: %.1f GB/s (lowest %.1f)'
            % (len(bw_seen), bw['gbs'], min(r['gbs'] for r in bw_seen)))
        results['bandwidth_range'] = [min(r['gbs'] for r in bw_seen), bw['gbs']]
    results['machine']['loadavg_end'] = os.getloadavg()
    out = os.path.join(bench_dir, 'results-%s.json' % time.strftime('%Y%m%d-%H%M%S'))
    with open(out, 'w') as f:
        json.dump(results, f, indent=1, default=str)

    print_report(results, a)
    print('all figures: %s' % out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
