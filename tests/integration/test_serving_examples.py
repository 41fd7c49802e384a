"""The serving examples: each passes `turbine check`, the one-process deployment answers on the
port TURBINE_HTTP_PORT names, and the two-process one serves the worker's model through the
head, and the etcd pair serves the engine host's model through the frontend with no head."""
import os
import subprocess

from etcd_cluster import Cluster, need_etcd

from serving_util import (ROOT, SLOW, TURBINE, Turbine, chat, free_port, wait_models,
                          wait_ready)

EXAMPLES = os.path.join(ROOT, 'examples')


def example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return f.read()


def test_examples_check():
    for name in ('serving.yaml', 'head.yaml', 'worker.yaml', 'etcd-frontend.yaml',
                 'etcd-engine.yaml'):
        p = subprocess.run([TURBINE, 'check', os.path.join(EXAMPLES, name)], capture_output=True,
                           text=True, timeout=30 * SLOW)
        assert p.returncode == 0, name + ': ' + p.stdout + p.stderr


def test_one_process_example(tmp_path):
    port = free_port()
    with Turbine(tmp_path, example('serving.yaml'), env={'TURBINE_HTTP_PORT': str(port)}) as t:
        wait_ready(port)
        wait_models(port, {'mock-llama'})
        r = chat(port, model='mock-llama', max_tokens=3)
        assert r.status == 200 and r.json()['usage']['completion_tokens'] == 3
        assert 'http listening on 127.0.0.1:%d' % port in t.log()


def test_two_process_example(tmp_path):
    port, reg = free_port(), free_port()
    env = {'TURBINE_HTTP_PORT': str(port), 'TURBINE_REGISTRY_PORT': str(reg)}
    with Turbine(tmp_path, example('head.yaml'), env=env) as head:
        with Turbine(tmp_path, example('worker.yaml'), name='worker',
                     join='tcp://127.0.0.1:%d' % reg):
            wait_models(port, {'mock-llama'})
            wait_ready(port)
            r = chat(port, model='mock-llama', max_tokens=2)
            assert r.status == 200
        wait_models(port, set(), timeout=10)
        assert head.alive()


def test_etcd_example(tmp_path):
    need_etcd()
    cluster = Cluster(1).start()
    try:
        port = free_port()
        env = {'TURBINE_HTTP_PORT': str(port), 'ETCD_ENDPOINTS': cluster.endpoints()}
        with Turbine(tmp_path, example('etcd-frontend.yaml'), env=env) as front:
            with Turbine(tmp_path, example('etcd-engine.yaml'), name='engine', env=env):
                wait_models(port, {'mock-llama'})
                wait_ready(port)
                r = chat(port, model='mock-llama', max_tokens=2)
                assert r.status == 200 and r.json()['usage']['completion_tokens'] == 2
            # The engine host stopped cleanly: its lease is revoked and the model leaves at once
            # (well inside the 10 s lease TTL).
            wait_models(port, set(), timeout=5)
            assert front.alive()
    finally:
        cluster.stop()
