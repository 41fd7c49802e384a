#!/usr/bin/env python3
"""Decode tokens/s with a JSON schema against without, on the same model and server.

Serves one model (http -> preprocessor -> router -> engine_cpu, prefix caching on) and sends
pairs of streamed completions, one at a time, alternating A B A B:
  A  response_format json_schema (a typical nested schema), greedy;
  B  the same prompt unconstrained, greedy, ignore_eos, max_tokens = the tokens A generated,
so both decode the same number of tokens.  Decode speed = (tokens - 1) / (time from the first
streamed token to the last), so the prompt and the first token (and the grammar's one-time
compilation, done by a warm-up request) are left out.  Prints each pair and the median and
range of the per-pair ratios A/B (the issue's goal: >= 0.8).

  .venv/bin/python bench/grammar/decode_speed.py [--model PATH] [--pairs 20]

Without --model it writes a random-weight model of llama2.c's stories15M shape (32,000-token
SentencePiece vocabulary, f32) with tools/tb_make_model.py into $TB_BENCH_DIR (default
/tmp/tb-bench).  Run it under `flock /work/bench.lock` on a shared machine.
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCHEMA = {
    'type': 'object',
    'properties': {
        'id': {'type': 'string', 'format': 'uuid'},
        'customer': {'type': 'object', 'properties': {
            'name': {'type': 'string', 'maxLength': 24},
            'email': {'type': 'string', 'maxLength': 32},
            'address': {'type': 'object', 'properties': {
                'street': {'type': 'string', 'maxLength': 32},
                'city': {'type': 'string', 'maxLength': 20},
                'country': {'enum': ['FR', 'DE', 'US', 'JP']}},
                'required': ['street', 'city', 'country'], 'additionalProperties': False}},
            'required': ['name', 'address'], 'additionalProperties': False},
        'items': {'type': 'array', 'minItems': 1, 'maxItems': 4, 'items': {
            'type': 'object', 'properties': {
                'sku': {'type': 'string', 'maxLength': 12},
                'qty': {'type': 'integer'},
                'price': {'type': 'number'}},
            'required': ['sku', 'qty', 'price'], 'additionalProperties': False}},
        'status': {'anyOf': [{'enum': ['new', 'paid', 'shipped']}, {'type': 'null'}]},
        'created': {'type': 'string', 'format': 'date-time'}},
    'required': ['id', 'customer', 'items', 'status', 'created'],
    'additionalProperties': False}

PROMPT = 'Once upon a time, an order was placed. Here it is as JSON:'


def make_model():
    base = os.environ.get('TB_BENCH_DIR', '/tmp/tb-bench')
    path = os.path.join(base, 'models', 'grammar-15m-f32')
    if not os.path.exists(os.path.join(path, 'config.json')):
        sys.path.insert(0, os.path.join(ROOT, 'tools'))
        import tb_make_model
        os.makedirs(os.path.dirname(path), exist_ok=True)
        assert tb_make_model.main(['--preset', '15m', '--format', 'hf', '--dtype', 'f32',
                                   '--out', path]) == 0
    return path


def stream(port, body):
    """(completion tokens, seconds from the first token to the last) of one streamed answer."""
    from serving_util import Stream
    s = Stream(port, dict(body, stream=True, stream_options={'include_usage': True}),
               path='/v1/completions', timeout=600)
    t_first = t_last = None
    usage = None
    for d in s.events():
        if d == '[DONE]':
            break
        e = json.loads(d)
        if e.get('usage'):
            usage = e['usage']
        if e.get('choices') and e['choices'][0].get('text'):
            t_last = time.perf_counter()
            t_first = t_first or t_last
    s.close()
    return usage['completion_tokens'], (t_last - t_first) if t_first else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', help='model folder or .gguf (default: a random 15M model)')
    ap.add_argument('--pairs', type=int, default=20)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
    from serving_util import Turbine, deployment, free_port, http_component, wait_ready
    import tempfile
    model = args.model or make_model()
    port = free_port()
    comps = [http_component(port, router='router'),
             ('router', 'router', 1, {'policy': 'least_loaded'}),
             ('pre', 'preprocessor', 1, {'served_model_name': 'm', 'model': model,
                                         'router': 'router'}),
             ('engine', 'engine_cpu', 1, {'served_model_name': 'm', 'model': model,
                                          'kv_cache': '256MiB', 'threads': args.threads})]
    tmp = tempfile.mkdtemp(prefix='tb-grammar-bench-')
    t = Turbine(tmp, deployment(port, comps))
    try:
        wait_ready(port, timeout=120)
        rf = {'type': 'json_schema', 'json_schema': {'name': 'order', 'schema': SCHEMA}}
        a_body = {'model': 'm', 'prompt': PROMPT, 'temperature': 0, 'max_tokens': 1500,
                  'response_format': rf}
        t0 = time.perf_counter()
        stream(port, a_body)  # compiles the grammar once (and warms the prefix cache)
        print('warm-up (grammar compilation included): %.2f s' % (time.perf_counter() - t0))
        ratios = []
        print('pair  tokens  schema tok/s  plain tok/s  ratio')
        for i in range(args.pairs):
            n, ta = stream(port, a_body)
            b_body = {'model': 'm', 'prompt': PROMPT, 'temperature': 0, 'max_tokens': n,
                      'ignore_eos': True}
            nb, tb = stream(port, b_body)
            sa, sb = (n - 1) / ta, (nb - 1) / tb
            ratios.append(sa / sb)
            print('%4d  %6d  %12.1f  %11.1f  %5.3f' % (i, n, sa, sb, sa / sb))
        print('ratio schema/plain over %d pairs: median %.3f, range %.3f .. %.3f' %
              (len(ratios), statistics.median(ratios), min(ratios), max(ratios)))
    finally:
        t.stop()


if __name__ == '__main__':
    main()
