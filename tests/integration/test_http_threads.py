"""The http frontend with several event loops (`threads`): one daemon per loop accepting on one
listening socket (no other process can bind the port beside it), every connection answered
whichever loop takes it, max_in_flight counted across the loops,
the metrics summing every loop's requests, and a clean drain."""
import errno
import socket
import threading
import time

import pytest

from serving_util import (SLOW, Turbine, chat, deployment, free_port, get, http_component,
                          metric_sum, metrics, mock_component, post, wait_for, wait_models,
                          wait_ready)

THREADS = 3


def start(tmp_path_factory, **http):
    port = free_port()
    yaml = deployment(port, [
        http_component(port, router='router', threads=THREADS, **http),
        ('router', 'router', 1, {}),
        mock_component('fast', name='fast', speedup=0),
        mock_component('direct', name='direct', speedup=0, direct=True),
        mock_component('slow', name='slow', ttft='1500ms', itl='1ms', output_tokens=2),
    ])
    t = Turbine(tmp_path_factory.mktemp('threads'), yaml)
    wait_ready(port)
    wait_models(port, {'fast', 'direct', 'slow'})
    return port, t


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port, t = start(tmp_path_factory)
    try:
        yield port, t
    finally:
        t.stop()


@pytest.fixture(scope='module')
def limited(tmp_path_factory):
    port, t = start(tmp_path_factory, max_in_flight=2)
    try:
        yield port, t
    finally:
        t.stop()


def listeners(port):
    """Listening TCP sockets on `port` (IPv4, /proc/net/tcp)."""
    n = 0
    with open('/proc/net/tcp') as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == '0A' and int(local.split(':')[1], 16) == port:
                n += 1
    return n


def test_one_daemon_per_loop_and_every_connection_answered(server):
    port, t = server
    assert listeners(port) == 1
    assert '3 threads' in t.log()
    # the port is ours alone: even a socket that asks for SO_REUSEPORT cannot bind beside it
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError) as e:
            s.bind(('127.0.0.1', port))
        assert e.value.errno == errno.EADDRINUSE
    # each request on a new connection: whichever loop is free accepts it
    codes, errors = [], []

    def client(i):
        try:
            for k in range(5):
                r = chat(port, 'hello %d %d' % (i, k), model='direct' if k % 2 else 'fast')
                codes.append(r.status)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
    ts = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for x in ts:
        x.start()
    for x in ts:
        x.join(60)
    assert not errors and codes == [200] * 60, (errors, codes)

    # every loop's finished requests reach /metrics (the others' within a second)
    def total():
        return metric_sum(metrics(port), 'dynamo_frontend_requests_total', status='success')
    wait_for(lambda: total() >= 60, 5 * SLOW, 'sixty requests counted')
    assert total() == 60
    wait_for(lambda: metric_sum(metrics(port), 'dynamo_frontend_inflight_requests') == 0,
             5 * SLOW, 'no request in flight')
    assert get(port, '/health').json()['in_flight'] == 0


def test_max_in_flight_counts_every_loop(limited):
    port, _ = limited
    results = []

    def slow():
        results.append(post(port, '/v1/chat/completions',
                            {'model': 'slow', 'messages': [{'role': 'user', 'content': 'x'}]},
                            timeout=20).status)
    ts = [threading.Thread(target=slow) for _ in range(2)]
    for x in ts:
        x.start()
    time.sleep(0.4 * SLOW)
    # new connections land on any loop; every one sees the two admitted by the others
    refused = [chat(port, 'x', model='fast') for _ in range(6)]
    for x in ts:
        x.join(30)
    assert results == [200, 200]
    assert [r.status for r in refused] == [503] * 6
    assert all(r.json()['error']['code'] == 'overloaded' for r in refused)
    assert chat(port, 'x', model='fast').status == 200
