#!/usr/bin/env python3
"""Streaming latency client: opens N concurrent streamed chat completions against an
OpenAI-compatible server and reports time to first token and inter-token latency percentiles.

Raw asyncio sockets (HTTP/1.1, chunked), so the client adds as little as it can.  Inter-token
latency is per token: a chunk carrying k words counts as k tokens spaced evenly (the mock engine
emits one word per token).

  stream_client.py --port 8000 --model mock --concurrency 8 --requests 64
"""
import argparse
import asyncio
import json
import statistics
import sys
import time


def pct(values, q):
    if not values:
        return float('nan')
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(q / 100.0 * (len(v) - 1)))))
    return v[k]


async def one_stream(host, port, model, max_tokens, prompt):
    reader, writer = await asyncio.open_connection(host, port)
    body = json.dumps({'model': model, 'stream': True, 'max_tokens': max_tokens,
                       'messages': [{'role': 'user', 'content': prompt}]}).encode()
    req = (b'POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n'
           b'Content-Type: application/json\r\nContent-Length: %d\r\n\r\n' % len(body)) + body
    t0 = time.perf_counter()
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b'\r\n\r\n')
    status = int(head.split(b' ', 2)[1])
    if status != 200:
        writer.close()
        raise RuntimeError('status %d' % status)
    stamps = []  # (time, tokens)
    pending = b''
    done = False
    while not done:
        size_line = await reader.readuntil(b'\r\n')
        size = int(size_line.split(b';')[0], 16)
        data = await reader.readexactly(size + 2)
        now = time.perf_counter()
        if size == 0:
            break
        pending += data[:-2]
        while b'\n\n' in pending:
            ev, pending = pending.split(b'\n\n', 1)
            payload = ev[6:]
            if payload == b'[DONE]':
                done = True
                break
            c = json.loads(payload)
            if 'error' in c:
                raise RuntimeError(c['error']['message'])
            if c['choices']:
                text = c['choices'][0]['delta'].get('content') or ''
                n = len(text.split())
                if n:
                    stamps.append((now, n))
    writer.close()
    ttft = stamps[0][0] - t0 if stamps else float('nan')
    itls = []
    for (a, _), (b, n) in zip(stamps, stamps[1:]):
        itls += [(b - a) / n] * n
    return ttft, itls


async def run(host, port, model, concurrency, requests, max_tokens):
    sem = asyncio.Semaphore(concurrency)
    ttfts, itls, errors = [], [], []

    async def task(i):
        async with sem:
            try:
                t, gaps = await one_stream(host, port, model, max_tokens, 'bench %d' % i)
                ttfts.append(t)
                itls.extend(gaps)
            except Exception as e:  # counted, reported
                errors.append(str(e))
    t0 = time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(requests)))
    return ttfts, itls, errors, time.perf_counter() - t0


def measure(host, port, model, concurrency, requests, max_tokens):
    """Returns a dict of TTFT / ITL percentiles in milliseconds."""
    ttfts, itls, errors, wall = asyncio.run(run(host, port, model, concurrency, requests,
                                                max_tokens))
    ms = lambda v: v * 1000.0
    return {
        'concurrency': concurrency, 'requests': requests, 'errors': len(errors),
        'first_error': errors[0] if errors else None, 'tokens': len(itls) + len(ttfts),
        'wall_s': wall,
        'ttft_p50': ms(pct(ttfts, 50)), 'ttft_p90': ms(pct(ttfts, 90)),
        'ttft_p99': ms(pct(ttfts, 99)),
        'itl_p50': ms(pct(itls, 50)), 'itl_p90': ms(pct(itls, 90)), 'itl_p99': ms(pct(itls, 99)),
        'itl_mean': ms(statistics.fmean(itls)) if itls else float('nan'),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--model', required=True)
    ap.add_argument('--concurrency', type=int, default=8)
    ap.add_argument('--requests', type=int, default=64)
    ap.add_argument('--max-tokens', type=int, default=64)
    a = ap.parse_args()
    r = measure(a.host, a.port, a.model, a.concurrency, a.requests, a.max_tokens)
    print(json.dumps(r, indent=2))
    sys.exit(1 if r['errors'] else 0)


if __name__ == '__main__':
    main()
