"""Discovery on etcd with real processes and a real etcd: two `turbine serve` processes with no
head see each other's routes, in whatever order they and etcd start; a process that leaves takes
its routes with it at once, one that is killed within the etcd lease TTL; and `turbine check`
refuses an etcd section it cannot use."""
import time


from etcd_cluster import Cluster, etcd, need_etcd  # noqa: F401 (etcd: a fixture)
from tbproc import Turbine, free_port, run, write_yaml


def deployment(endpoints, name, listen_port=None, ttl='2s'):
    listen = f'registry:\n  listen: tcp://127.0.0.1:{listen_port}\n' if listen_port else ''
    return write_yaml(f"""namespace: t
{listen}discovery:
  backend: etcd
  endpoints: [{endpoints}]
  lease_ttl: {ttl}
components:
  - name: {name}
    plugin: echo
""")


def call(port, route, expect=0):
    return run('call', '--join', f'tcp://127.0.0.1:{port}', route, '--data', 'hi', timeout=20,
               expect=expect)


def test_two_processes_without_a_head_serve_each_other(etcd):
    port = free_port()
    a = Turbine('serve', deployment(etcd.endpoints(), 'alpha', port, ttl='30s'))
    b = Turbine('serve', deployment(etcd.endpoints(), 'beta', ttl='30s'))
    try:
        a.wait_for("component 'alpha' started")
        b.wait_for("component 'beta' started")
        assert 'discovery on etcd' in a.output
        a.wait_for('route added: t.beta.echo', timeout=15)
        rc, out = call(port, 't.beta.echo')
        assert 'final' in out, out
        # beta's view: alpha's route arrived through etcd too.
        b.wait_for('route added: t.alpha.echo', timeout=15)
        # A clean stop revokes beta's lease: its route leaves alpha long before the 30 s TTL
        # (about 1 s: a watch event and a sync pass).
        t0 = time.time()
        assert b.stop() == 0
        a.wait_for('route removed: t.beta.echo', timeout=15)
        assert time.time() - t0 < 15
        b.assert_clean()
        call(port, 't.beta.echo', expect=1)
        assert a.stop() == 0
        a.assert_clean()
    finally:
        a.kill()
        b.kill()


def test_killed_process_routes_leave_within_the_lease_ttl(etcd):
    port = free_port()
    a = Turbine('serve', deployment(etcd.endpoints(), 'alpha', port))
    b = Turbine('serve', deployment(etcd.endpoints(), 'beta'))
    try:
        a.wait_for('route added: t.beta.echo', timeout=15)
        t0 = time.time()
        b.proc.kill()
        a.wait_for('route removed: t.beta.echo', timeout=20)
        gone = time.time() - t0
        # etcd drops the 2 s lease (it checks leases every 500 ms), the watch tells alpha, and
        # alpha's sync thread deregisters at its next pass (every 500 ms): the lease, not the
        # closed socket, removes it, so not before about the TTL.
        assert gone > 1.0, gone
        call(port, 't.beta.echo', expect=1)
    finally:
        a.kill()
        b.kill()


def test_processes_started_before_etcd_converge_when_it_comes():
    need_etcd()
    c = Cluster(1)
    port = free_port()
    a = Turbine('serve', deployment(c.endpoints(), 'alpha', port))
    b = None
    try:
        a.wait_for("component 'alpha' started")
        a.wait_for('etcd not reachable yet', timeout=10)
        assert ' ERROR ' not in a.output  # etcd missing at start is logged at info
        c.start()
        b = Turbine('serve', deployment(c.endpoints(), 'beta'))
        a.wait_for('route added: t.beta.echo', timeout=20)
        call(port, 't.beta.echo')
    finally:
        a.kill()
        if b:
            b.kill()
        c.stop()


def test_check_refuses_unusable_discovery_sections():
    rc, out = run('check', write_yaml("""discovery:
  backend: etcd
components:
  - name: e
    plugin: echo
"""), expect=2)
    assert 'discovery.endpoints' in out and 'client URLs' in out, out
    rc, out = run('check', write_yaml("""discovery:
  backend: etcd
  endpoints: [10.0.0.1:2379]
  prefix: turbine
components:
  - name: e
    plugin: echo
"""), expect=2)
    assert ':3:' in out and 'http://HOST:PORT' in out, out
    assert 'discovery.prefix' in out, out
    rc, out = run('check', write_yaml("""discovery:
  backend: zookeeper
components:
  - name: e
    plugin: echo
"""), expect=2)
    assert 'discovery.backend' in out and 'etcd' in out, out


def test_events_cross_processes_through_the_exported_hubs(tmp_path, etcd):
    """The router (frontend process) receives the load events of engines in another process:
    each process exports its own publishers' events and imports everyone else's."""
    from serving_util import Turbine as Served, chat, metric_sum, metrics, wait_models
    port = free_port()
    common = f"""namespace: t
discovery:
  backend: etcd
  endpoints: [{etcd.endpoints()}]
  lease_ttl: 2s
"""
    front = common + f"""components:
  - name: http
    plugin: http
    config:
      port: {port}
      router: router
  - name: router
    plugin: router
    config:
      policy: least_loaded
"""
    engines = common + """components:
  - name: engine
    plugin: mock
    config:
      served_model_name: m
"""
    with Served(tmp_path, front, name='front') as f:
        with Served(tmp_path, engines, name='engines'):
            wait_models(port, {'m'})
            for _ in range(5):
                assert chat(port, model='m', max_tokens=2).status == 200
            # the engine publishes its load after each step; the router counts what it receives
            deadline = time.time() + 10
            while metric_sum(metrics(port), 'turbine_router_load_events_total') == 0:
                assert time.time() < deadline, 'no load event crossed to the router'
                time.sleep(0.2)
        assert f.alive()
