"""The benchmark tools of bench/engine and bench/serving: their outputs and bookkeeping, never
their speed.

bench_membw and bench_engine must print well-formed figures; the serving client must count
tokens, TTFT and ITL the way bench/README.md says; run.py's weight-bytes rule must agree with
bench_engine's; sse_baseline (bench/serving's control) must stream every token, the first no
sooner than asked.  No test here asserts how fast anything is.
"""
import asyncio
import json
import os
import subprocess
import sys

import pytest

import exitcheck
from conftest import BUILD, ROOT, SHARED

sys.path.insert(0, os.path.join(ROOT, 'bench', 'engine'))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
import serve_client  # noqa: E402

BUILD_DIR = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
SPM = os.path.join(SHARED, 'tokenizer-vectors', 'ggml-vocab-llama-spm.gguf')
TINYSTORIES = os.path.join(SHARED, 'models', 'tinystories-656k')


def bench_exe(name):
    return os.path.join(BUILD_DIR, 'bench', name)


def test_membw_prints_one_json_object():
    exe = bench_exe('bench_membw')
    if not os.path.exists(exe):
        pytest.skip('%s absent' % exe)
    r = subprocess.run([exe, '-t', '2', '-m', '64', '-r', '3'], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    o = json.loads(lines[0])
    assert o['threads'] == 2 and o['rounds'] == 3 and o['bytes'] == 64 << 20
    assert len(o['samples_gbs']) == 3
    assert all(s > 0 for s in o['samples_gbs'])
    assert o['gbs'] == max(o['samples_gbs'])


def test_membw_refuses_bad_options():
    exe = bench_exe('bench_membw')
    if not os.path.exists(exe):
        pytest.skip('%s absent' % exe)
    for args in (['-t', '0'], ['-r', '0'], ['-m', '1'], ['-x']):
        r = subprocess.run([exe] + args, capture_output=True, text=True, timeout=30)
        exitcheck.check_exit(r.returncode, r.stdout + r.stderr, 2, 'bench_membw %s' % args)
        assert r.stdout == ''


@pytest.mark.pure_python
def test_percentile_matches_linear_interpolation():
    vals = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert serve_client._percentile(vals, 50) == 3.0
    assert serve_client._percentile(vals, 0) == 1.0
    assert serve_client._percentile(vals, 100) == 5.0
    assert serve_client._percentile(vals, 99) == pytest.approx(4.96)
    assert serve_client._percentile([7.0], 99) == 7.0


@pytest.mark.pure_python
def test_summary_counts_tokens_errors_and_lengths():
    recs = [
        {'ttft': 0.1, 'itl': [0.01, 0.03], 'chunks': 3, 'completion_tokens': 3,
         'prompt_tokens': 8, 'error': None, 'latency': 0.2},
        {'ttft': 0.3, 'itl': [0.02, 0.02], 'chunks': 3, 'completion_tokens': None,
         'prompt_tokens': None, 'error': None, 'latency': 0.4},
        {'ttft': 0.2, 'itl': [0.05], 'chunks': 2, 'completion_tokens': 2, 'prompt_tokens': 8,
         'error': None, 'latency': 0.3},
        {'ttft': None, 'itl': [], 'chunks': 0, 'completion_tokens': None, 'prompt_tokens': None,
         'error': 'HTTP 500: boom', 'latency': 0.01},
    ]
    s = serve_client.summarize(recs, 2.0, 2, 3)
    assert s['requests'] == 4 and s['ok'] == 3 and s['errors'] == 1
    assert s['first_error'] == 'HTTP 500: boom'
    # usage counts where given, chunks otherwise: 3 + 3 + 2
    assert s['output_tokens'] == 8
    assert s['output_tok_s'] == pytest.approx(4.0)
    assert s['wrong_length'] == 1
    assert s['prompt_tokens'] == [8]
    assert s['ttft_p50_ms'] == pytest.approx(200.0)
    assert s['itl_p50_ms'] == pytest.approx(20.0)
    assert s['itl_p99_ms'] == pytest.approx(49.2)


@pytest.mark.pure_python
def test_prompts_are_distinct_and_in_range():
    p = serve_client.make_prompts(16, 64, 32000, 5)
    assert len(p) == 16 and all(len(x) == 64 for x in p)
    assert len({tuple(x) for x in p}) == 16
    assert all(259 <= t < 32000 for x in p for t in x)
    assert p == serve_client.make_prompts(16, 64, 32000, 5)


async def _fake_sse_server(chunks, requests_seen):
    """A loopback server that answers any POST with the given SSE data lines, then closes."""
    async def handle(reader, writer):
        head = await reader.readuntil(b'\r\n\r\n')
        length = 0
        for line in head.decode().split('\r\n'):
            if line.lower().startswith('content-length:'):
                length = int(line.split(':')[1])
        body = await reader.readexactly(length)
        requests_seen.append(json.loads(body))
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n'
                     b'Connection: close\r\n\r\n')
        for c in chunks:
            writer.write(b'data: ' + json.dumps(c).encode() + b'\n\n')
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.write(b'data: [DONE]\n\n')
        await writer.drain()
        writer.close()
    return await asyncio.start_server(handle, '127.0.0.1', 0)


@pytest.mark.pure_python
def test_client_parses_a_stream():
    tok = [{'choices': [{'text': t, 'index': 0, 'finish_reason': None}]}
           for t in ['a', '', 'b', 'c']]
    final = {'choices': [{'text': '', 'index': 0, 'finish_reason': 'length'}]}
    usage = {'choices': [], 'usage': {'prompt_tokens': 6, 'completion_tokens': 4}}
    seen = []

    async def go():
        srv = await _fake_sse_server(tok + [final, usage], seen)
        port = srv.sockets[0].getsockname()[1]
        async with srv:
            return await serve_client.run_level('http://127.0.0.1:%d' % port, 'm', 2, 3, 6, 4,
                                                1000, seed=1)

    s = asyncio.run(go())
    assert s['errors'] == 0 and s['ok'] == 3
    assert s['output_tokens'] == 12 and s['wrong_length'] == 0
    assert s['chunks_per_request'] == 4  # the empty-text token counts, the final chunk not
    assert s['prompt_tokens'] == [6]
    assert s['ttft_p50_ms'] > 0 and s['itl_p50_ms'] > 0
    assert len(seen) == 3
    for body in seen:
        assert body['stream'] is True and body['ignore_eos'] is True
        assert body['max_tokens'] == 4 and body['min_tokens'] == 4
        assert body['stream_options'] == {'include_usage': True}
        assert len(body['prompt']) == 6 and body['model'] == 'm'


@pytest.mark.pure_python
def test_client_reports_http_errors():
    async def go():
        async def handle(reader, writer):
            await reader.readuntil(b'\r\n\r\n')
            msg = b'{"error": {"message": "no such model"}}'
            writer.write(b'HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n'
                         b'Connection: close\r\n\r\n' % len(msg) + msg)
            await writer.drain()
            writer.close()
        srv = await asyncio.start_server(handle, '127.0.0.1', 0)
        port = srv.sockets[0].getsockname()[1]
        async with srv:
            return await serve_client.run_level('http://127.0.0.1:%d' % port, 'm', 1, 2, 4, 4,
                                                1000)

    s = asyncio.run(go())
    assert s['errors'] == 2 and s['ok'] == 0 and s['output_tokens'] == 0
    assert s['first_error'].startswith('HTTP 404') and 'no such model' in s['first_error']


def _make_tiny(tmp_path, dtype):
    if not os.path.exists(SPM) or not os.path.isdir(TINYSTORIES):
        pytest.skip('../shared tokenizer data absent (%s, %s)' % (SPM, TINYSTORIES))
    import tb_make_model
    out = str(tmp_path / ('tiny-%s.gguf' % dtype))
    assert tb_make_model.main(['--preset', 'tiny', '--format', 'gguf', '--dtype', dtype,
                               '--out', out]) == 0
    return out


@pytest.mark.parametrize('dtype', ['f32', 'q8_0'])
def test_bench_engine_reports_every_test(tmp_path, dtype):
    exe = bench_exe('bench_engine')
    if not os.path.exists(exe):
        pytest.skip('%s absent (built once plugins/engine/cpu/tb_cpu_backend.c exists)' % exe)
    path = _make_tiny(tmp_path, dtype)
    r = subprocess.run([exe, '-m', path, '-t', '2', '-p', '8', '-n', '4', '-r', '2', '-B', '1,3',
                        '-k', '16'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    info, tests = lines[0], [x for x in lines[1:] if x['test'] != 'mem']
    mem = [x for x in lines[1:] if x['test'] == 'mem']
    assert len(mem) == 1 and mem[0]['rss_bytes'] > 0, lines  # resident memory, after the tests
    assert info['dtype'] == dtype and info['backend'] == 'cpu' and info['threads'] == 2
    import run
    total, per_tok = run.weight_bytes_per_token(path)
    assert info['weight_bytes_per_token'] == per_tok
    assert info['tensor_bytes'] == total
    assert [(t['test'], t['n'], t['batch']) for t in tests] == [('pp', 8, 1), ('tg', 4, 1),
                                                                ('tg', 4, 3)]
    for t in tests:
        assert len(t['samples_tok_s']) == 2 and all(v > 0 for v in t['samples_tok_s'])
        assert t['best_tok_s'] == pytest.approx(max(t['samples_tok_s']), rel=1e-3)


def test_bench_engine_refuses_bad_input(tmp_path):
    exe = bench_exe('bench_engine')
    if not os.path.exists(exe):
        pytest.skip('%s absent (built once plugins/engine/cpu/tb_cpu_backend.c exists)' % exe)
    r = subprocess.run([exe], capture_output=True, text=True, timeout=30)
    exitcheck.check_exit(r.returncode, r.stdout + r.stderr, 2, 'bench_engine')
    assert 'usage' in r.stderr
    r = subprocess.run([exe, '-m', str(tmp_path / 'none.gguf')], capture_output=True, text=True,
                       timeout=30)
    exitcheck.check_exit(r.returncode, r.stdout + r.stderr, 1, 'bench_engine')
    assert 'cannot open' in r.stderr
    r = subprocess.run([exe, '-m', 'x', '-B', '0'], capture_output=True, text=True, timeout=30)
    exitcheck.check_exit(r.returncode, r.stdout + r.stderr, 2, 'bench_engine')


def test_sse_baseline_streams_at_the_set_times():
    """bench/serving's control server: every stream has its tokens, the first after ttft."""
    exe = bench_exe('sse_baseline')
    if not os.path.exists(exe):
        pytest.skip('%s absent' % exe)
    sys.path.insert(0, os.path.join(ROOT, 'bench', 'serving'))
    import stream_client
    p = subprocess.Popen([exe, '-t', '20', '-i', '2', '-n', '8'], stdout=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode().split()
        assert len(line) == 2 and line[0] == 'listening', line
        r = stream_client.measure('127.0.0.1', int(line[1]), 'm', 2, 4, 8)
        assert r['errors'] == 0, r['first_error']
        assert r['tokens'] == 4 * 8
        assert r['ttft_p50'] >= 19
    finally:
        p.kill()
        p.wait()
