#!/usr/bin/env python3
"""Turbine's test runner: unit binaries (cmocka, TAP output), Python tests (pytest) and fuzz
targets (libFuzzer, asan build), over one or more builds.  docs/testing.md says what each count
means.  Prints a breakdown by kind, the reasons of every skip, the failures, and ends with one
line: "N passed, N failed, N skipped"; exits non-zero on any failure.

Trusts no exit code alone: a unit binary must run every test its TAP plan announced; a fuzz
target must report the number of runs it was asked for; a sanitizer report or a death by signal
is a failure whatever the status; under CI=true a skip for anything but the hardware is a
failure."""
import argparse
import collections
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
import exitcheck  # noqa: E402

# A skip whose reason starts with this is about the machine (an instruction set the CPU lacks),
# not a missing dependency: it stays a skip under CI=true.
HARDWARE = 'hardware:'


def is_ci():
    return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


class Results:
    """Counts by kind ('unit', 'integration', 'fuzz'), skip reasons, failure names."""

    KINDS = ('unit', 'integration', 'fuzz')

    def __init__(self, ci):
        self.ci = ci
        self.counts = {k: collections.Counter() for k in self.KINDS}
        self.skips = collections.Counter()
        self.failures = []
        self.fuzz_runs = 0
        self.hardware = []  # paths a test did not run because this CPU lacks them

    def add(self, kind, outcome, name, why=''):
        self.counts[kind][outcome] += 1
        if outcome == 'skipped':
            self.skips[why or 'no reason given'] += 1
        elif outcome == 'failed':
            self.failures.append('%s %s%s' % (kind, name, ': ' + why if why else ''))

    def skip(self, kind, name, why):
        """A skip, or under CI=true (unless the hardware is why) a failure naming the reason."""
        if self.ci and not why.startswith(HARDWARE):
            self.add(kind, 'failed', name, 'skipped under CI=true: ' + why)
        else:
            self.add(kind, 'skipped', name, why)

    def total(self, outcome):
        return sum(c[outcome] for c in self.counts.values())

    def report(self, seconds):
        print('\n== summary')
        for k in self.KINDS:
            c = self.counts[k]
            extra = ' (%d targets, %d fuzz runs executed)' % (sum(c.values()), self.fuzz_runs) \
                if k == 'fuzz' else ''
            print('%-12s %5d passed %3d failed %3d skipped%s'
                  % (k, c['passed'], c['failed'], c['skipped'], extra))
        for why, n in sorted(self.skips.items(), key=lambda x: -x[1]):
            print('skipped %4d  %s' % (n, why))
        for note in self.hardware:
            print('not run on this CPU: ' + note)
        for f in self.failures[:200]:
            print('FAILED  ' + f)
        print('suite time %.0f s' % seconds)
        print('%d passed, %d failed, %d skipped' % (self.total('passed'), self.total('failed'),
                                                  self.total('skipped')))


def tail(text, n):
    return '\n'.join('    ' + l for l in text.splitlines()[-n:])


# ---- unit ------------------------------------------------------------------------------------

TAP_RESULT = re.compile(r'^(not ok|ok)\s+(\d+)\s*-?\s*(.*)$')
TAP_PLAN = re.compile(r'^1\.\.(\d+)\s*$')
SKIP_REASON = re.compile(r'^#\s*skip:\s*(.*)$')


def parse_tap(out):
    """(plan or None, [(outcome, name, skip reason)], saw cmocka's closing '# ok/not ok' line).
    A test states why it skips on a '# skip: REASON' line just before cmocka's skip line."""
    plan, tests, closed, reason = None, [], False, None
    for line in out.splitlines():
        m = TAP_PLAN.match(line)
        if m and plan is None:
            plan = int(m.group(1))
            continue
        m = SKIP_REASON.match(line)
        if m:
            reason = m.group(1).strip()
            continue
        if re.match(r'^# (not )?ok - ', line):
            closed = True
            continue
        m = TAP_RESULT.match(line)
        if not m:
            continue
        name = m.group(3)
        if '# SKIP' in line:
            tests.append(('skipped', name.split('#')[0].strip(), reason or 'no reason given'))
        elif m.group(1) == 'ok':
            tests.append(('passed', name, None))
        else:
            tests.append(('failed', name, None))
        reason = None
    return plan, tests, closed


def run_unit_binary(path, env, timeout):
    """Runs one unit binary: (its output, its exit status or None on a timeout, seconds)."""
    t0 = time.time()
    try:
        p = subprocess.run([path], cwd=ROOT, env=env, capture_output=True, text=True,
                           errors='replace', timeout=timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as ex:
        out = ex.stdout or ''
        out = out.decode(errors='replace') if isinstance(out, bytes) else out
        out, rc = out + '\nTIMEOUT after %d s' % timeout, None
    return out, rc, time.time() - t0


def run_unit(build, pattern, res, timeout, jobs):
    udir = os.path.join(build, 'tests', 'unit')
    if not os.path.isdir(udir):
        res.add('unit', 'failed', udir, 'no unit tests built')
        return
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT='TAP', TB_ROOT=ROOT, TB_BUILD=build)
    names = []
    for name in sorted(os.listdir(udir)):
        path = os.path.join(udir, name)
        if not name.startswith('test_') or not os.access(path, os.X_OK) or '.' in name:
            continue
        if pattern and not re.search(pattern, name):
            continue
        names.append(name)
    if not names and not pattern:
        res.add('unit', 'failed', udir, 'no unit test binaries found')
    # the binaries run `jobs` at a time; their results are read and printed in name order
    with concurrent.futures.ThreadPoolExecutor(max(jobs, 1)) as pool:
        runs = [pool.submit(run_unit_binary, os.path.join(udir, n), env, timeout)
                for n in names]
        for name, run in zip(names, runs):
            out, rc, took = run.result()
            unit_result(name, out, rc, took, timeout, res)


def unit_result(name, out, rc, took, timeout, res):
    """Counts one unit binary's TAP output and prints its line."""
    plan, tests, closed = parse_tap(out)
    for note in re.findall(r'^# hardware: (.*)$', out, re.M):
        if note not in res.hardware:
            res.hardware.append(note)
    n = collections.Counter(t[0] for t in tests)
    for outcome, tname, why in tests:
        full = '%s:%s' % (name, tname)
        if outcome == 'skipped':
            res.skip('unit', full, why)
        else:
            res.add('unit', outcome, full)
    # The binary as a whole: its plan kept, its status and output those of a clean run.
    why = None
    if rc is None:
        why = 'timed out after %d s' % timeout
    elif plan is None:
        why = 'printed no TAP plan'
    elif len(tests) != plan:
        why = 'planned %d tests, ran %d' % (plan, len(tests))
    elif not closed:
        why = 'stopped before its closing summary line'
    else:
        why = exitcheck.problem(rc, out)
        if why is None and rc != 0 and n['failed'] == 0:
            why = 'exit status %d without a failed test' % rc
    if why:
        res.add('unit', 'failed', name, why)
    status = 'FAIL' if why or n['failed'] else 'ok'
    print('%-4s unit %-32s %3d passed %2d failed %2d skipped  %.1fs%s'
          % (status, name, n['passed'], n['failed'] + (1 if why else 0), n['skipped'], took,
             '  (' + why + ')' if why else ''))
    if status == 'FAIL':
        print(tail(out, 60))


# ---- integration -----------------------------------------------------------------------------

# Modules that take longest (the emulated CUDA flavour, reference forward passes, the netns and
# etcd fault tests): handed out first when the modules run on several workers, so that no long
# one starts last.  Only an order; a module missing here runs all the same.
LONG_FIRST = ['test_cuda_flavour.py', 'test_multihost_etcd.py', 'test_grammar.py',
              'test_tokenizer_hf.py', 'test_models.py', 'test_chat_templates.py',
              'test_forward_moe.py', 'test_forward.py', 'test_migration.py',
              'test_serving_failures.py', 'test_forward_families.py', 'test_etcd.py',
              'test_discovery_etcd.py', 'test_bench_routing.py', 'test_structured_output.py']


def module_order(files):
    """The modules of LONG_FIRST first, in its order, then the others."""
    rank = {f: i for i, f in enumerate(LONG_FIRST)}
    return sorted(files, key=lambda f: rank.get(f, len(LONG_FIRST)))


def run_pytest(build, pattern, res, first_build, jobs):
    tdir = os.path.join(ROOT, 'tests', 'integration')
    files = sorted(f for f in os.listdir(tdir) if f.startswith('test_') and f.endswith('.py'))
    if pattern:
        files = [f for f in files if re.search(pattern, f)]
    if not files:
        return
    junit = os.path.join(build, 'pytest.xml')
    files = module_order(files)
    if os.path.exists(junit):
        os.unlink(junit)
    env = dict(os.environ, TB_ROOT=ROOT, TB_BUILD=build, PYTHONUNBUFFERED='1')
    # a module that fails to import (or, under CI=true, skips as a whole) is one failure; the
    # other modules still run
    cmd = [sys.executable, '-m', 'pytest', '-q', '-rfEs', '-p', 'no:cacheprovider',
           '--continue-on-collection-errors', '--junitxml', junit]
    if not first_build:
        # A test that runs no built program is the same test in every build: counted once.
        cmd += ['-m', 'not pure_python']
    if jobs > 1 and len(files) > 1:
        # pytest-xdist: whole modules per worker (a module's fixtures are started once and its
        # tests keep their order); every test picks free ports and its own temporary folders
        cmd += ['-n', str(min(jobs, len(files))), '--dist', 'loadfile']
    cmd += [os.path.join(tdir, f) for f in files]
    print('pytest%s%s: %s' % ('' if first_build else ' (build-dependent tests only)',
                              ', %d workers' % min(jobs, len(files))
                              if jobs > 1 and len(files) > 1 else '',
                              ' '.join(files)))
    p = subprocess.run(cmd, cwd=ROOT, env=env)
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        res.add('integration', 'failed', 'pytest', 'no junit report (status %d)' % p.returncode)
        return
    failed_before = res.counts['integration']['failed']
    for case in root.iter('testcase'):
        name = '%s::%s' % (case.get('classname', ''), case.get('name', ''))
        if case.find('failure') is not None or case.find('error') is not None:
            el = case.find('failure') if case.find('failure') is not None else case.find('error')
            why = el.get('message') or ''
            if why == 'collection failure' and el.text:
                why = el.text.strip().splitlines()[-1]
            res.add('integration', 'failed', name, why[:200])
        elif case.find('skipped') is not None:
            msg = case.find('skipped').get('message') or ''
            msg = re.sub(r'^Skipped:\s*', '', msg)
            res.skip('integration', name, msg)
        else:
            res.add('integration', 'passed', name)
    # 0 all passed, 1 some failed, 5 nothing collected (a -k that matched no test here; without
    # -k it is a failure)
    if p.returncode == 5 and not pattern:
        res.add('integration', 'failed', 'pytest', 'collected no tests')
    if p.returncode not in (0, 1, 5) or (p.returncode == 1 and
                                         res.counts['integration']['failed'] == failed_before):
        res.add('integration', 'failed', 'pytest', 'pytest exited with status %d'
                % p.returncode)


# ---- fuzz ------------------------------------------------------------------------------------

FUZZ_DONE = re.compile(r'^Done (\d+) runs in ', re.M)


def fuzz_target(path, name, art_root, runs, timeout):
    """Runs one libFuzzer target: (its output, exit status or None when hung, seconds, the
    folder its artifacts go to)."""
    corpus = os.path.join(ROOT, 'tests', 'fuzz', 'corpus', name[len('fuzz_'):])
    # libFuzzer writes new inputs into its first corpus folder: give it a scratch one so the
    # repository's seed corpus stays as committed; crash, leak and timeout artifacts go
    # under the build folder, never into the repository.
    scratch = tempfile.mkdtemp(prefix='tb-fuzz-')
    arts = os.path.join(art_root, name)
    shutil.rmtree(arts, ignore_errors=True)
    os.makedirs(arts)
    args = [path, '-runs=%d' % runs, '-seed=1', '-max_len=65536', '-rss_limit_mb=2048',
            '-timeout=60', '-artifact_prefix=' + arts + '/', scratch]
    if os.path.isdir(corpus):
        args.append(corpus)
    t0 = time.time()
    try:
        p = subprocess.run(args, cwd=arts, capture_output=True, text=True, errors='replace',
                           timeout=timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as ex:
        out = ex.stderr or ''
        out = out.decode(errors='replace') if isinstance(out, bytes) else out
        out, rc = out, None
    shutil.rmtree(scratch, ignore_errors=True)
    return out, rc, time.time() - t0, arts


def run_fuzz(build, pattern, res, runs, timeout, required, jobs):
    fdir = os.path.join(build, 'tests', 'fuzz')
    if not os.path.isdir(fdir):
        if required:
            # the asan build always has fuzz targets when clang is installed (tools/setup.sh)
            res.skip('fuzz', fdir, 'no fuzz targets built under %s (is clang installed?)'
                     % os.path.relpath(fdir, ROOT))
        return
    art_root = os.path.join(build, 'fuzz-artifacts')
    names = []
    for name in sorted(os.listdir(fdir)):
        path = os.path.join(fdir, name)
        if not name.startswith('fuzz_') or '.' in name or not os.access(path, os.X_OK):
            continue
        if pattern and not re.search(pattern, name):
            continue
        names.append(name)
    # `jobs` targets at a time; results read and printed in name order
    with concurrent.futures.ThreadPoolExecutor(max(jobs, 1)) as pool:
        futs = [pool.submit(fuzz_target, os.path.join(fdir, n), n, art_root, runs, timeout)
                for n in names]
        for name, fut in zip(names, futs):
            out, rc, took, arts = fut.result()
            fuzz_result(name, out, rc, took, arts, runs, timeout, res)


def fuzz_result(name, out, rc, took, arts, runs, timeout, res):
    """Counts one fuzz target's run and prints its line."""
    done = [int(x) for x in FUZZ_DONE.findall(out)]
    ran = done[-1] if done else 0
    res.fuzz_runs += ran
    if rc is None:
        why = 'hung: killed after %d s (--fuzz-timeout)' % timeout
    elif rc != 0:
        why = exitcheck.problem(rc, out) or 'exit status %d' % rc
    elif not done:
        why = 'libFuzzer reported no "Done N runs" line'
    elif ran < runs:
        why = 'ran %d of %d runs' % (ran, runs)
    else:
        why = exitcheck.problem(rc, out)
    res.add('fuzz', 'failed' if why else 'passed', name, why or '')
    kept = sorted(os.listdir(arts))
    if not kept:
        os.rmdir(arts)
    print('%-4s fuzz %-32s %d runs  %.1fs%s' % ('FAIL' if why else 'ok', name, ran, took,
                                                '  (' + why + ')' if why else ''))
    if why:
        print(tail(out, 40))
        for k in kept:
            print('    artifact: %s' % os.path.join(arts, k))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', action='append', default=None,
                    help='build folder to test (repeatable); default build/release')
    ap.add_argument('--only', choices=['unit', 'py', 'fuzz'], default=None)
    ap.add_argument('-k', dest='pattern', default=None, help='regex on test file names')
    ap.add_argument('--fuzz-runs', type=int, default=20000)
    ap.add_argument('--fuzz-timeout', type=int, default=600,
                    help='seconds one fuzz target may take before it counts as hung')
    ap.add_argument('--unit-timeout', type=int, default=600)
    ap.add_argument('--jobs', type=int, default=int(os.environ.get('TB_TEST_JOBS', '0')),
                    help='unit binaries and pytest modules run this many at a time; default the '
                    'number of cores, at most 4; 1 runs them one after another')
    a = ap.parse_args()
    if a.jobs <= 0:
        a.jobs = min(os.cpu_count() or 1, 4)
    exitcheck.sanitizer_env()
    builds = [os.path.abspath(b) for b in (a.build or [os.path.join(ROOT, 'build', 'release')])]
    res = Results(is_ci())
    if res.ci:
        print('CI=true: a skip for a missing dependency counts as a failure')
    t0 = time.time()
    for i, build in enumerate(builds):
        print('== %s' % os.path.relpath(build, ROOT))
        if a.only in (None, 'unit'):
            run_unit(build, a.pattern, res, a.unit_timeout, a.jobs)
        if a.only in (None, 'py'):
            run_pytest(build, a.pattern, res, i == 0, a.jobs)
        if a.only in (None, 'fuzz'):
            asan = 'asan' in os.path.basename(build)
            run_fuzz(build, a.pattern, res, a.fuzz_runs, a.fuzz_timeout,
                     asan and not a.pattern, a.jobs)
    res.report(time.time() - t0)
    sys.exit(1 if res.total('failed') else 0)


if __name__ == '__main__':
    main()
