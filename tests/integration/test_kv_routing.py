"""KV-aware routing and request migration over tcp with real processes (docs/router.md,
docs/operations.md "Request migration"): a head (http, router, preprocessor, registry) and token
mock engines in worker processes joined to it.  The mocks keep a pretend prefix cache and
publish its KV events; the router's kv_aware policy sends same-prefix requests where the prefix
is cached (seen in usage.prompt_tokens_details.cached_tokens); a router that joins late sees a
gap in the events and asks for a snapshot; an engine SIGKILLed mid-stream costs the client
nothing (the stream moves, the text is the unbroken answer), migration_limit 0 gives the old
error, and a stream with no instance left ends in an error, never a hang."""
import json
import os
import threading
import time

import pytest

from conftest import SHARED
from serving_util import (SLOW, Stream, Turbine, deployment, free_port, metric_sum, metrics,
                          post, wait_for, wait_models)

TINY = os.path.join(SHARED, 'models', 'tinystories-656k')
MODEL = 'tiny-mock'
TTL = 1.0  # lease TTL of these deployments

pytestmark = pytest.mark.skipif(not os.path.isdir(TINY),
                                reason='skipped: ../shared/models/tinystories-656k is absent')

WORDS = ('once upon a time there was a little girl named lily she loved to play outside in '
         'the park with her friends and her dog max one day they found a big red ball').split()


def system_prompt(g, n=160):
    """A long shared prefix per group `g` (distinct words order per group)."""
    return ' '.join(WORDS[(i * (g + 3) + g) % len(WORDS)] for i in range(n))


def head_yaml(port, reg, policy='kv_aware', router=True, router_name=None, **pre):
    extra = ('registry:\n  listen: tcp://127.0.0.1:%d\n  heartbeat_interval: 200ms\n'
             '  lease_ttl: %gs' % (reg, TTL))
    pcfg = {'served_model_name': MODEL, 'model': TINY}
    comps = [('http', 'http', 1, {'port': port, 'health_interval': '200ms'})]
    if router:
        comps[0][3]['router'] = 'router'
        comps.append(('router', 'router', 1, {'policy': policy}))
        pcfg['router'] = 'router'
    if router_name:  # a router deployed elsewhere
        pcfg['router'] = router_name
    pcfg.update(pre)
    comps.append(('pre', 'preprocessor', 1, pcfg))
    return deployment(port, comps, extra=extra)


def engine_worker(tmp_path, name, reg, **cfg):
    c = {'served_model_name': MODEL, 'kind': 'tokens', 'token_id_min': 3, 'token_id_max': 2047,
         'ttft': '0s', 'itl': '0s', 'output_tokens': 4}
    c.update(cfg)
    yaml = deployment(0, [('engine', 'mock', 1, c)]).replace('level: info', 'level: debug')
    return Turbine(tmp_path, yaml, name=name, join='tcp://127.0.0.1:%d' % reg)


def start(tmp_path, n_workers, head_kw=None, **mock_cfg):
    port, reg = free_port(), free_port()
    head = Turbine(tmp_path, head_yaml(port, reg, **(head_kw or {})))
    workers = []
    try:
        for i in range(n_workers):
            workers.append(engine_worker(tmp_path, 'w%d' % i, reg, **mock_cfg))
        wait_models(port, {MODEL}, timeout=30)
        wait_for(lambda: _engines(head) >= n_workers, 20, '%d engines known' % n_workers)
    except Exception:
        for w in workers:
            w.kill()
        head.stop(check=False)
        raise
    return head, workers, port, reg


def _engines(head):
    """Engine instances the head's router routes to (it logs each one)."""
    return head.log().count("routing model '%s' (tokens)" % MODEL)


def complete(port, prompt, **kw):
    body = {'model': MODEL, 'prompt': prompt, 'max_tokens': 4, 'temperature': 0}
    body.update(kw)
    r = post(port, '/v1/completions', body, timeout=30)
    assert r.status == 200, r.body
    out = r.json()
    out['instance'] = r.header('x-turbine-instance')  # the engine instance that answered
    return out


def cached(resp):
    return resp['usage'].get('prompt_tokens_details', {}).get('cached_tokens', 0)


def stop_all(head, workers):
    for w in workers:
        w.stop(check=False) if w.alive() else None
    head.stop()


# ---- routing -------------------------------------------------------------------------------

def test_same_prefix_requests_land_where_the_prefix_is_cached(tmp_path):
    head, workers, port, _ = start(tmp_path, 3)
    try:
        groups = 4
        for g in range(groups):
            first = complete(port, system_prompt(g) + ' question zero')
            assert cached(first) == 0
            assert first['instance'] and len(first['instance']) == 16, first
            prefix_tokens = first['usage']['prompt_tokens']
            # the stored blocks reach the router as kv events before the next request
            wait_for(lambda: metric_sum(metrics(port), 'turbine_router_kv_events_total')
                     >= g + 1, 5, 'kv events of group %d' % g)
            for q in range(1, 4):
                r = complete(port, system_prompt(g) + ' question %d' % q)
                # all but the last partial block and the differing tail came from the cache
                assert cached(r) >= prefix_tokens - 32, (g, q, r['usage'], prefix_tokens)
                # and the header names the instance that holds the prefix: the first one's
                assert r['instance'] == first['instance'], (g, q)
        # a streamed answer names its instance too (headers go out with the first chunk)
        s = Stream(port, {'model': MODEL, 'prompt': system_prompt(0) + ' streamed',
                          'max_tokens': 2, 'stream': True}, path='/v1/completions', timeout=30)
        assert s.status == 200 and len(s.headers.get('x-turbine-instance', '')) == 16, s.headers
        s.sock.close()
        ms = metrics(port)
        assert metric_sum(ms, 'turbine_router_kv_overlap_blocks_count') == 4 * groups + 1
        assert metric_sum(ms, 'turbine_router_kv_overlap_blocks_sum') >= 3 * groups * 5
        wait_for(lambda: metric_sum(metrics(port), 'turbine_router_decisions_total',
                                    policy='kv_aware') >= 8 * groups, 5, 'decisions counted')
        assert metric_sum(ms, 'turbine_router_kv_gaps_total') == 0
    finally:
        stop_all(head, workers)


def test_round_robin_misses_the_cache_kv_aware_would_hit(tmp_path):
    # The control for the test above: the same sequence under round_robin finds the prefix on
    # the instance that holds it only when its turn comes round (1 time in 3).
    head, workers, port, _ = start(tmp_path, 3, head_kw={'policy': 'round_robin'})
    try:
        hits = 0
        for q in range(6):
            r = complete(port, system_prompt(0) + ' question %d' % q)
            hits += cached(r) > 0
        assert hits <= 3, hits
    finally:
        stop_all(head, workers)


def test_a_late_router_asks_for_a_snapshot(tmp_path):
    # The engines cache a prefix before the router exists (the preprocessor falls back to
    # picking them in turn); the router, started later in a process of its own, missed those
    # events: the next event of each engine shows a gap in its numbering, the router asks for a
    # snapshot, and the prefix cached before it came is found.
    port, reg = free_port(), free_port()
    head = Turbine(tmp_path, head_yaml(port, reg, router=False, router_name='router'))
    workers = [engine_worker(tmp_path, 'w%d' % i, reg) for i in range(2)]
    router = None
    try:
        wait_models(port, {MODEL}, timeout=30)
        complete(port, system_prompt(5) + ' warm')  # cached on one engine, unseen
        rcfg = deployment(0, [('router', 'router', 1, {'policy': 'kv_aware'})])
        router = Turbine(tmp_path, rcfg.replace('level: info', 'level: debug'), name='router',
                         join='tcp://127.0.0.1:%d' % reg)
        router.wait_log(r"routing model '%s' \(tokens\)(.|\n)*routing model '%s' \(tokens\)"
                        % (MODEL, MODEL), timeout=20)
        # requests with new prefixes make the engines publish again: the one that served the
        # warm-up numbers its next event 2, a gap for the router (the other starts at 1)
        for i in range(20):
            complete(port, system_prompt(6 + i) + ' other %d' % i)
            if 'asked for a snapshot' in router.log():
                break
        assert router.log().count('asked for a snapshot') == 1, router.log()[-3000:]
        time.sleep(0.2 * SLOW)  # the snapshots' way back
        r = complete(port, system_prompt(5) + ' again')
        assert cached(r) > 0, r['usage']
        assert 'routing fallback' in head.log()  # the first request had no router to ask
    finally:
        for w in workers:
            w.stop(check=False)
        if router:
            router.stop()
        head.stop()


def test_cpu_engines_publish_kv_events_the_router_follows(tmp_path):
    # The real engine's KV events (CPU flavour, the tiny model): repeats of a prefix land on
    # the engine that cached it.  Each request waits for the engines' idle load report (they
    # report within load_interval): a report from the middle of the previous answer would still
    # count its blocks as decoding and send the repeat elsewhere.
    c = {'served_model_name': MODEL, 'model': TINY, 'kv_cache': '16MiB', 'threads': 1,
         'block_size': 16, 'load_interval': '50ms'}
    port, reg = free_port(), free_port()
    head = Turbine(tmp_path, head_yaml(port, reg))
    workers = [Turbine(tmp_path, deployment(0, [('engine', 'engine_cpu', 1, c)]),
                       name='w%d' % i, join='tcp://127.0.0.1:%d' % reg) for i in range(2)]
    try:
        wait_models(port, {MODEL}, timeout=30)
        wait_for(lambda: _engines(head) >= 2, 20, 'two engines known')
        for g in range(3):
            time.sleep(0.15)
            first = complete(port, system_prompt(g, 100) + ' zero')
            wait_for(lambda: metric_sum(metrics(port), 'turbine_router_kv_events_total')
                     >= g + 1, 5, 'kv events of group %d' % g)
            for q in range(1, 3):
                time.sleep(0.15)
                r = complete(port, system_prompt(g, 100) + ' question %d' % q)
                assert cached(r) >= first['usage']['prompt_tokens'] - 32, (g, q, r['usage'])
    finally:
        stop_all(head, workers)
