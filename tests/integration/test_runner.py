"""The suite's own honesty (docs/testing.md): a sanitizer report or a crash on an error path is a
failure even when the status is the 1 a refusal test expects; tests/run.py counts what really
ran (TAP plans, libFuzzer's runs), times out a hung fuzz target on its own, and turns a skip
into a failure under CI=true.

tests/tools/tb_fault refuses its input (exit 1) after committing a planted fault; the asan
build must report every kind, the release build at least the segfault."""
import importlib.util
import os
import stat
import subprocess
import sys

import pytest

import exitcheck
from conftest import ASAN, ROOT, run_tool

# what each build can see: ASan/UBSan/LSan find the memory errors; any build sees a signal
FAULTS = ['heap-overflow', 'use-after-free', 'leak', 'ub', 'segv'] if ASAN else ['segv']


def load_runner():
    spec = importlib.util.spec_from_file_location('tb_run', os.path.join(ROOT, 'tests', 'run.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_clean_refusal_passes():
    p = run_tool('tb_fault', ['refuse'], expect=1, text=True)
    assert 'input refused' in p.stderr


@pytest.mark.parametrize('fault', FAULTS)
def test_planted_fault_on_an_error_path_fails(fault):
    """The same refusal with a fault before it: the exit helper must raise, naming why."""
    with pytest.raises(AssertionError) as ei:
        run_tool('tb_fault', [fault], expect=1, text=True)
    msg = str(ei.value)
    assert 'killed by SIG' in msg or 'sanitizer' in msg.lower() or 'Sanitizer' in msg, msg


@pytest.mark.parametrize('fault', FAULTS)
def test_planted_fault_fails_a_pytest_run(fault, tmp_path):
    """A test written the ordinary way (expecting the refusal's status 1) fails the suite."""
    (tmp_path / 'test_planted.py').write_text(
        'import sys\nsys.path.insert(0, %r)\nfrom conftest import run_tool\n\n'
        'def test_refusal():\n    run_tool("tb_fault", [%r], expect=1)\n'
        % (os.path.dirname(os.path.abspath(__file__)), fault))
    p = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                        str(tmp_path / 'test_planted.py')], capture_output=True, text=True,
                       timeout=120, cwd=str(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    assert '1 failed' in p.stdout, p.stdout


@pytest.mark.pure_python
def test_sanitizer_options_have_their_own_statuses():
    env = exitcheck.sanitizer_env({'ASAN_OPTIONS': 'detect_leaks=0:exitcode=1:foo=2'})
    assert 'exitcode=%d' % exitcheck.ASAN_EXITCODE in env['ASAN_OPTIONS']
    assert 'exitcode=1' not in env['ASAN_OPTIONS'] and 'foo=2' in env['ASAN_OPTIONS']
    assert 'detect_leaks=1' in env['ASAN_OPTIONS']
    assert 'print_stacktrace=1' in env['UBSAN_OPTIONS']
    assert 'exitcode=%d' % exitcheck.UBSAN_EXITCODE in env['UBSAN_OPTIONS']
    assert exitcheck.ASAN_EXITCODE not in (0, 1, 2) and exitcheck.UBSAN_EXITCODE not in (0, 1, 2)
    assert exitcheck.problem(-11, '') == 'killed by SIGSEGV'
    assert exitcheck.problem(1, 'x\nfoo.c:3:1: runtime error: shift\n') is not None
    assert exitcheck.problem(1, 'error: refused') is None


# ---- the runner ------------------------------------------------------------------------------

def script(path, body):
    path.write_text('#!/bin/sh\n' + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.pure_python
def test_unit_binary_that_stops_part_way_fails(tmp_path, capsys):
    run = load_runner()
    udir = tmp_path / 'tests' / 'unit'
    udir.mkdir(parents=True)
    # plans 3, runs 1, exits 0: one pass under the old runner
    script(udir / 'test_stops', 'echo 1..3\necho "ok 1 - test_a"\nexit 0\n')
    script(udir / 'test_whole', 'echo 1..2\necho "ok 1 - test_a"\necho "# skip: hardware: x"\n'
           'echo "ok 2 # SKIP"\necho "# ok - tests"\n')
    res = run.Results(ci=True)
    run.run_unit(str(tmp_path), None, res, 30, 2)
    out = capsys.readouterr().out
    assert 'planned 3 tests, ran 1' in out
    assert res.counts['unit']['passed'] == 2
    assert res.counts['unit']['failed'] == 1
    assert res.counts['unit']['skipped'] == 1  # a hardware skip stays a skip under CI
    assert res.skips == {'hardware: x': 1}


@pytest.mark.pure_python
def test_ci_turns_a_missing_dependency_skip_into_a_failure():
    run = load_runner()
    ci, local = run.Results(ci=True), run.Results(ci=False)
    for r in (ci, local):
        r.skip('integration', 't::x', '../shared/models absent')
    assert ci.counts['integration'] == {'failed': 1}
    assert 'skipped under CI=true: ../shared/models absent' in ci.failures[0]
    assert local.counts['integration'] == {'skipped': 1}
    assert local.skips == {'../shared/models absent': 1}


@pytest.mark.pure_python
def test_fuzz_runs_are_counted_and_a_hang_is_its_own_failure(tmp_path, capsys):
    run = load_runner()
    fdir = tmp_path / 'tests' / 'fuzz'
    fdir.mkdir(parents=True)
    script(fdir / 'fuzz_full', 'echo "Done 500 runs in 0 second(s)" >&2\n')
    script(fdir / 'fuzz_short', 'echo "Done 7 runs in 0 second(s)" >&2\n')
    script(fdir / 'fuzz_hangs', 'exec sleep 30\n')
    res = run.Results(ci=False)
    run.run_fuzz(str(tmp_path), None, res, 500, 2, True, 2)
    out = capsys.readouterr().out
    assert res.counts['fuzz'] == {'passed': 1, 'failed': 2}
    assert res.fuzz_runs == 507
    assert 'ran 7 of 500 runs' in out
    assert 'hung: killed after 2 s' in out
    # artifacts go under the build folder; empty ones are removed
    assert not os.path.exists(tmp_path / 'fuzz-artifacts' / 'fuzz_full')


@pytest.mark.pure_python
def test_summary_ends_with_one_plain_line(capsys):
    run = load_runner()
    res = run.Results(ci=False)
    res.add('unit', 'passed', 'a')
    res.add('integration', 'failed', 'b', 'why')
    res.skip('fuzz', 'c', 'no fuzz targets')
    res.report(1.0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == '1 passed, 1 failed, 1 skipped'
    assert 'skipped    1  no fuzz targets' in lines
    assert 'FAILED  integration b: why' in lines

