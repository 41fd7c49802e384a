#!/usr/bin/env python3
"""How closely the mock engine keeps its configured timings through the whole stack (http ->
router -> mock), one stream at a time: the upper bounds that used to be assertions in
tests/integration/test_mock_engine.py (a speed is a figure, not a test; the tests keep the lower
bounds, which are the mock's contract).  Prints time to first text, the median gap between
texts and the total of one stream per model; with --check exits 1 when one is over its bound.

usage: .venv/bin/python bench/serving/mock_timing.py [--build build/release] [--check]"""
import argparse
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# model: (config, bounds in seconds on (ttft, median gap, total), as the tests had them)
MODELS = {
    'timed': ({'ttft': '200ms', 'itl': '20ms', 'output_tokens': 10}, (0.200, 0.025, 0.38)),
    'timed2x': ({'ttft': '200ms', 'itl': '20ms', 'output_tokens': 10, 'speedup': 2},
                (0.100, 0.013, 0.19)),
}
# headroom the tests allowed per figure (multiplied by 3 under the sanitizers there)
SLACK = (0.1, 0.01, 0.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default=os.path.join(ROOT, 'build', 'release'))
    ap.add_argument('--check', action='store_true', help='exit 1 over a bound')
    a = ap.parse_args()
    os.environ['TB_BUILD'] = os.path.abspath(a.build)
    os.environ['TB_ROOT'] = ROOT
    sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
    from serving_util import (Turbine, deployment, free_port, http_component, mock_component,
                              wait_models, wait_ready)
    from test_mock_engine import timed_stream
    port = free_port()
    comps = [http_component(port, router='router'), ('router', 'router', 1, {})]
    comps += [mock_component(m, name=m, **cfg) for m, (cfg, _) in MODELS.items()]
    over = []
    with tempfile.TemporaryDirectory() as tmp:
        with Turbine(tmp, deployment(port, comps)):
            wait_ready(port)
            wait_models(port, set(MODELS))
            for m, (_, bounds) in MODELS.items():
                ttft, gaps, total = timed_stream(port, m)
                figs = (ttft, statistics.median(gaps), total)
                print('%-8s ttft %.4f s  median gap %.4f s  total %.4f s' % ((m,) + figs))
                for name, f, b, s in zip(('ttft', 'gap', 'total'), figs, bounds, SLACK):
                    if f >= b + s:
                        over.append('%s %s %.4f s >= %.4f s' % (m, name, f, b + s))
    for o in over:
        print('over the bound: ' + o)
    return 1 if over and a.check else 0


if __name__ == '__main__':
    sys.exit(main())
