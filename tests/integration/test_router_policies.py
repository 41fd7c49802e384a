"""The router: policies chosen in YAML decide where requests go (seen through the engines' and
the router's metrics), least_loaded follows reported load, and a missing or absent router never
makes requests fail while engines live."""
import threading
import time

from serving_util import (SLOW, Turbine, chat, deployment, free_port, get, http_component,
                          metric_sum, metrics, mock_component, series, wait_for, wait_ready)


def start(tmp_path, policy, engines, router=True, **http_cfg):
    port = free_port()
    comps = [http_component(port, router='router', **http_cfg)]
    if router:
        comps.append(('router', 'router', 1, {'policy': policy, 'seed': 7}))
    comps += engines
    t = Turbine(tmp_path, deployment(port, comps))
    wait_ready(port)
    # every engine answered its probe (so the frontend's own picks would use all of them)
    def healthy():
        insts = get(port, '/health').json()['instances']
        return (len(insts) == sum(e[2] for e in engines)
                and all(i['state'] == 'healthy' for i in insts))
    wait_for(healthy, 10, 'all engines healthy')
    return t, port


def served(port):
    """Requests each mock instance accepted, by instance id (after the counters settle)."""
    return series(metrics(port), 'turbine_mock_requests_total')


def settle(port, total):
    return wait_for(lambda: sum(served(port).values()) >= total and served(port), 5,
                    '%d requests counted' % total)


def test_round_robin(tmp_path):
    t, port = start(tmp_path, 'round_robin', [mock_component(replicas=3, speedup=0)])
    try:
        for _ in range(30):
            assert chat(port).status == 200
        counts = settle(port, 30)
        assert sorted(counts.values()) == [10, 10, 10]
        wait_for(lambda: metric_sum(metrics(port), 'turbine_router_decisions_total',
                                    policy='round_robin') == 30, 5, 'router decisions counted')
        assert metric_sum(metrics(port), 'dynamo_frontend_requests_total', code='200') == 30
        assert metric_sum(metrics(port), 'dynamo_frontend_disconnected_clients') == 0
    finally:
        t.stop()


def test_random(tmp_path):
    t, port = start(tmp_path, 'random', [mock_component(replicas=2, speedup=0)])
    try:
        for _ in range(40):
            assert chat(port).status == 200
        counts = settle(port, 40)
        assert len(counts) == 2 and min(counts.values()) >= 5
        wait_for(lambda: metric_sum(metrics(port), 'turbine_router_decisions_total',
                                    policy='random') == 40, 5, 'router decisions counted')
    finally:
        t.stop()


def test_least_loaded_follows_load(tmp_path):
    # Same model on a fast engine and on a slow one whose requests stay running for 2 s: the
    # slow one reports its load, so least_loaded sends nearly everything to the fast one.
    t, port = start(tmp_path, 'least_loaded', [
        mock_component('m', name='fast', speedup=0),
        mock_component('m', name='slow', ttft='0s', itl='200ms', output_tokens=10),
    ])
    try:
        results = []
        threads = []
        for _ in range(20):
            th = threading.Thread(target=lambda: results.append(chat(port, model='m').status))
            th.start()
            threads.append(th)
            time.sleep(0.04 * SLOW)
        for th in threads:
            th.join(30)
        assert results == [200] * 20
        counts = settle(port, 20)
        assert len(counts) == 2
        assert min(counts.values()) <= 4, counts   # the slow one got few
        assert max(counts.values()) >= 16, counts  # round robin would give 10 / 10
        wait_for(lambda: metric_sum(metrics(port), 'turbine_router_load_events_total') > 0, 5,
                 'load events counted')
    finally:
        t.stop()


def test_frontend_picks_without_router(tmp_path):
    # http names a router component that does not exist: it picks round robin itself
    t, port = start(tmp_path, 'round_robin', [mock_component(replicas=2, speedup=0)],
                    router=False)
    try:
        for _ in range(10):
            assert chat(port).status == 200
        counts = settle(port, 10)
        assert sorted(counts.values()) == [5, 5]
        assert metric_sum(metrics(port), 'turbine_router_decisions_total') == 0
    finally:
        t.stop()
