"""Routing is decided in one place: with a router, every request goes to the instance the router
chose (the frontend's and the preprocessor's own choices are never taken), and a choice made
without the router is a fallback that is logged at warn and counted in
turbine_router_fallback_total{component, model, reason} (docs/router.md, "Fallback")."""
import os
import re

import pytest

from conftest import SHARED
from serving_util import (Turbine, chat, deployment, free_port, http_component, metric_sum,
                          metrics, mock_component, post, series, wait_for, wait_models,
                          wait_ready)

TINY = os.path.join(SHARED, 'models', 'tinystories-656k')
TINY_MODEL = 'tiny-mock'
FALLBACK = 'turbine_router_fallback_total'
needs_tiny = pytest.mark.skipif(not os.path.isdir(TINY),
                                reason='skipped: ../shared/models/tinystories-656k is absent')


def start(tmp_path, make_comps, models):
    port = free_port()
    t = Turbine(tmp_path, deployment(port, make_comps(port)))
    try:
        wait_ready(port, timeout=30)
        wait_models(port, models)
    except Exception:
        t.stop(check=False)
        raise
    return t, port


def token_mocks(replicas):
    return ('engine', 'mock', replicas,
            {'served_model_name': TINY_MODEL, 'kind': 'tokens', 'token_id_min': 3,
             'token_id_max': 2047, 'ttft': '0s', 'itl': '0s', 'output_tokens': 4})


def preprocessor(**cfg):
    c = {'served_model_name': TINY_MODEL, 'model': TINY}
    c.update(cfg)
    return ('pre', 'preprocessor', 1, c)


def complete(port):
    return post(port, '/v1/completions', {'model': TINY_MODEL, 'prompt': 'Once upon a time',
                                          'max_tokens': 4})


def settled(port, name, total):
    """The series of `name` by instance, once they add up to `total`."""
    def ok():
        s = series(metrics(port), name)
        return s if sum(s.values()) >= total else None
    return wait_for(ok, 5, '%d counted in %s' % (total, name))


def warn_lines(t, component, reason):
    """The warn lines of `component` saying it fell back for `reason`."""
    rx = re.compile(r'^\S+ WARN +%s: routing fallback \(%s[:)][^\n]*$' % (component, reason),
                    re.M)
    return rx.findall(t.log())


def test_no_router_is_a_logged_counted_fallback(tmp_path):
    # The frontend names no router: each pick is its own, every one counted, the first logged.
    t, port = start(tmp_path, lambda port: [http_component(port),
                                            mock_component(replicas=2, speedup=0)],
                    {'mock-model'})
    try:
        for _ in range(6):
            assert chat(port).status == 200
        ms = metrics(port)
        assert metric_sum(ms, FALLBACK, component='http', model='mock-model',
                          reason='no_router') == 6
        assert metric_sum(ms, FALLBACK) == 6
        lines = warn_lines(t, 'http', 'no_router')
        assert len(lines) == 1, t.log()  # then at most one line per 10 s
        assert "for model 'mock-model'" in lines[0] and '1 such since the last line' in lines[0]
        # the picks still spread over both instances
        assert sorted(settled(port, 'turbine_mock_requests_total', 6).values()) == [3, 3]
    finally:
        t.stop()


@needs_tiny
def test_router_gone_is_a_logged_counted_fallback(tmp_path):
    # Both routing components name a router that is not deployed: the frontend falls back
    # (router_down), and so does the preprocessor (its call to the router finds no route).
    t, port = start(tmp_path, lambda port: [http_component(port, router='router'),
                                            preprocessor(router='router'), token_mocks(2)],
                    {TINY_MODEL})
    try:
        for _ in range(4):
            r = complete(port)
            assert r.status == 200, r.body
        ms = metrics(port)
        assert metric_sum(ms, FALLBACK, component='http', model=TINY_MODEL,
                          reason='router_down') == 4
        assert metric_sum(ms, FALLBACK, component='pre', model=TINY_MODEL,
                          reason='router_down') == 4
        assert metric_sum(ms, FALLBACK) == 8
        assert len(warn_lines(t, 'http', 'router_down')) == 1, t.log()
        assert len(warn_lines(t, 'pre', 'router_down')) == 1, t.log()
    finally:
        t.stop()


@needs_tiny
def test_every_request_goes_where_the_router_says(tmp_path):
    # http -> router -> preprocessor -> router -> 3 token engines, policy random (seeded): the
    # spread is uneven, so only following the router's answers gives, per engine instance,
    # exactly the requests the router sent it; and nothing falls back.
    n = 30
    t, port = start(tmp_path, lambda port: [
        http_component(port, router='router'),
        ('router', 'router', 1, {'policy': 'random', 'seed': 11}),
        preprocessor(router='router'), token_mocks(3)], {TINY_MODEL})
    try:
        # The router may learn of an engine before the preprocessor does (each follows the route
        # events on its own bus handle); an instance the preprocessor cannot call yet would be a
        # counted fallback.  Start once the preprocessor knows all three.
        wait_for(lambda: re.search(r"model '%s': 3 engine instances|is servable: 3 engine "
                                   r"instances" % re.escape(TINY_MODEL), t.log()), 20,
                 'the preprocessor knowing the 3 engines')
        for _ in range(n):
            r = complete(port)
            assert r.status == 200, r.body
        served = settled(port, 'turbine_mock_requests_total', n)
        decided = settled(port, 'turbine_router_decisions_total', 2 * n)  # text + tokens
        assert len(served) == 3
        for instance, count in served.items():
            assert decided.get(instance) == count, (instance, served, decided)
        # the other decisions went to the preprocessor (the text-level instance), one each
        assert sum(decided.values()) - sum(served.values()) == n
        assert metric_sum(metrics(port), FALLBACK) == 0
        assert not re.search(r'routing fallback', t.log())
    finally:
        t.stop()
