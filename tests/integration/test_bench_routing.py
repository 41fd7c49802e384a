"""bench/routing/run.py's bookkeeping, never its speed: the workload and the ideal hit rate are
what bench/routing/README.md says, and a tiny run reports well-formed figures for every policy
and, under a few SIGKILLs, streams that all completed with the unbroken answer's text."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED

# Loaded under a name of its own: bench/engine's run.py is imported as `run` by test_bench.py.
_spec = importlib.util.spec_from_file_location('routing_bench_run',
                                               os.path.join(ROOT, 'bench', 'routing', 'run.py'))
routing_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(routing_bench)

TINY = os.path.join(SHARED, 'models', 'tinystories-656k')


class Args:
    groups, prefix, suffix, requests, rate = 3, 40, 8, 12, 100.0


@pytest.mark.pure_python
def test_workload_and_ideal_hits():
    reqs = routing_bench.workload(Args, 7)
    assert reqs == routing_bench.workload(Args, 7)  # seeded
    assert len(reqs) == 12
    assert all(len(p) == 48 for _, _, p in reqs)
    assert [t for t, _, _ in reqs] == sorted(t for t, _, _ in reqs)
    for _, g, p in reqs:  # every request of a group starts with its system prompt
        first = next(q for _, h, q in reqs if h == g)
        assert p[:40] == first[:40]
    seen = len({g for _, g, _ in reqs})
    # each repeat finds the 2 full blocks of 16 of its 40-token system prompt
    assert routing_bench.ideal_hits(reqs, 40) == (12 - seen) * 32


@pytest.mark.skipif(not os.path.isdir(TINY), reason='skipped: %s is absent' % TINY)
def test_a_tiny_run_reports_every_figure(tmp_path):
    out = tmp_path / 'r.json'
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'routing', 'run.py'),
                        '--requests', '16', '--rate', '20', '--rounds', '1',
                        '--prefill-weights', '1', '--kills', '2', '--kill-every', '1.5',
                        '--streams', '3', '--mig-output', '16', '--json', str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    rows = res['routing']['mock']
    assert [x['policy'] for x in rows] == ['kv_aware:1', 'round_robin', 'least_loaded']
    for x in rows:
        assert x['requests'] == 16 and x['failed'] == 0
        assert 0 <= x['hit_rate'] <= 1 and x['ttft_p50_ms'] > 0 and x['req_per_s'] > 0
    m = res['migration']
    assert m['kills'] == 2 and m['streams'] > 0 and m['completed'] == m['streams']
    assert m['errors'] == 0 and m['hangs'] == 0 and m['not_identical'] == 0
    assert 'migration under faults' in r.stdout
