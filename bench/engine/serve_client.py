#!/usr/bin/env python3
"""Streaming load client for OpenAI-compatible /v1/completions servers (Turbine, llama-server).

Closed loop: `concurrency` workers each send one request at a time until `requests` requests
are done.  Every request carries its own random prompt of token ids (so no prefix cache can
serve it), asks for exactly `max_tokens` tokens (ignore_eos, min_tokens) greedily, streams,
and asks for usage in the last chunk.  Per request it records the time to the first token chunk
(TTFT) and the gaps between token chunks (ITL); per run, total output tokens over the run's wall
time.

  .venv/bin/python bench/engine/serve_client.py --url http://127.0.0.1:8390 --model bench \\
      --concurrency 4 --requests 8 --prompt-tokens 64 --max-tokens 128

Needs httpx (bench/requirements.txt).
"""
import argparse
import asyncio
import json
import random
import sys
import time

import httpx


def _percentile(values, q):
    """Linear-interpolated percentile of a non-empty list (numpy's default method)."""
    v = sorted(values)
    if not v:
        return float('nan')
    k = (len(v) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def make_prompts(n, n_tokens, vocab, seed):
    """n prompts of n_tokens token ids, drawn away from the special ids at the start of the
    vocabulary."""
    rnd = random.Random(seed)
    lo = min(259, vocab // 2)
    return [[rnd.randrange(lo, vocab) for _ in range(n_tokens)] for _ in range(n)]


async def one_request(client, url, model, prompt, max_tokens):
    body = {
        'model': model,
        'prompt': prompt,
        'max_tokens': max_tokens,
        'min_tokens': max_tokens,
        'ignore_eos': True,
        'temperature': 0,
        'stream': True,
        'stream_options': {'include_usage': True},
    }
    rec = {'ttft': None, 'itl': [], 'chunks': 0, 'completion_tokens': None,
           'prompt_tokens': None, 'error': None}
    t0 = time.perf_counter()
    last = None
    try:
        async with client.stream('POST', url + '/v1/completions', json=body) as r:
            if r.status_code != 200:
                text = (await r.aread()).decode('utf-8', 'replace')
                rec['error'] = 'HTTP %d: %s' % (r.status_code, text[:300])
                return rec
            async for line in r.aiter_lines():
                if not line.startswith('data:'):
                    continue
                data = line[5:].strip()
                if data == '[DONE]':
                    break
                now = time.perf_counter()
                msg = json.loads(data)
                if 'error' in msg:
                    rec['error'] = str(msg['error'])[:300]
                    break
                usage = msg.get('usage')
                if usage:
                    rec['completion_tokens'] = usage.get('completion_tokens')
                    rec['prompt_tokens'] = usage.get('prompt_tokens')
                choices = msg.get('choices') or []
                # A token chunk: a choice that is not the bare final one (finish_reason set and
                # no text).  Servers send one chunk per token (text may be empty mid-character).
                if not choices:
                    continue
                c = choices[0]
                if c.get('finish_reason') and not c.get('text'):
                    continue
                rec['chunks'] += 1
                if last is None:
                    rec['ttft'] = now - t0
                else:
                    rec['itl'].append(now - last)
                last = now
    except (httpx.HTTPError, ValueError) as ex:
        rec['error'] = '%s: %s' % (type(ex).__name__, ex)
    rec['latency'] = time.perf_counter() - t0
    return rec


async def run_level(url, model, concurrency, requests, prompt_tokens, max_tokens, vocab,
                    seed=0, timeout=600.0):
    """Runs `requests` requests with `concurrency` in flight; returns the summary dict."""
    prompts = make_prompts(requests, prompt_tokens, vocab, seed)
    queue = list(range(requests))
    recs = []
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as client:
        async def worker():
            while queue:
                i = queue.pop(0)
                recs.append(await one_request(client, url, model, prompts[i], max_tokens))

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        wall = time.perf_counter() - t0
    return summarize(recs, wall, concurrency, max_tokens)


def summarize(recs, wall, concurrency, max_tokens):
    ok = [r for r in recs if not r['error'] and r['ttft'] is not None]
    errors = [r['error'] for r in recs if r['error']]
    out_tokens = sum((r['completion_tokens'] if r['completion_tokens'] is not None
                      else r['chunks']) for r in ok)
    ttft = [r['ttft'] * 1000 for r in ok]
    itl = [g * 1000 for r in ok for g in r['itl']]
    wrong_len = sum(1 for r in ok if (r['completion_tokens'] if r['completion_tokens'] is not None
                                      else r['chunks']) != max_tokens)
    s = {
        'concurrency': concurrency,
        'requests': len(recs),
        'ok': len(ok),
        'errors': len(errors),
        'first_error': errors[0] if errors else None,
        'wall_s': wall,
        'output_tokens': out_tokens,
        'output_tok_s': out_tokens / wall if wall > 0 else 0.0,
        'wrong_length': wrong_len,
        'prompt_tokens': sorted({r['prompt_tokens'] for r in ok if r['prompt_tokens']}),
        'chunks_per_request': (sum(r['chunks'] for r in ok) / len(ok)) if ok else 0,
        'ttft_p50_ms': _percentile(ttft, 50),
        'ttft_p99_ms': _percentile(ttft, 99),
        'itl_p50_ms': _percentile(itl, 50),
        'itl_p99_ms': _percentile(itl, 99),
        'latency_p50_s': _percentile([r['latency'] for r in ok], 50),
    }
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--url', required=True)
    ap.add_argument('--model', default='bench')
    ap.add_argument('--concurrency', type=int, default=1)
    ap.add_argument('--requests', type=int, default=0, help='default: 2 x concurrency')
    ap.add_argument('--prompt-tokens', type=int, default=64)
    ap.add_argument('--max-tokens', type=int, default=128)
    ap.add_argument('--vocab', type=int, default=32000)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    n = a.requests or 2 * a.concurrency
    s = asyncio.run(run_level(a.url, a.model, a.concurrency, n, a.prompt_tokens, a.max_tokens,
                              a.vocab, a.seed))
    json.dump(s, sys.stdout)
    sys.stdout.write('\n')
    return 0 if s['errors'] == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
