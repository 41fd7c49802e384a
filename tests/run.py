#!/usr/bin/env python3
"""Turbine's test runner: unit binaries (cmocka, TAP output), Python tests (pytest) and fuzz
targets.  Ends with one line: "N passed, N failed, N skipped"."""
import argparse
import os
import re
import shutil
import subprocess
import tempfile
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_unit(build, pattern, results):
    udir = os.path.join(build, 'tests', 'unit')
    if not os.path.isdir(udir):
        print('no unit tests built under %s' % udir)
        results['failed'] += 1
        return
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT='TAP', TB_ROOT=ROOT, TB_BUILD=build)
    for name in sorted(os.listdir(udir)):
        path = os.path.join(udir, name)
        if not name.startswith('test_') or not os.access(path, os.X_OK) or '.' in name:
            continue
        if pattern and not re.search(pattern, name):
            continue
        t0 = time.time()
        try:
            p = subprocess.run([path], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=600)
            out, rc = p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired as ex:
            out, rc = (ex.stdout or '') + '\nTIMEOUT after 600 s', -1
            if isinstance(out, bytes):
                out = out.decode(errors='replace')
        ok = failed = skipped = 0
        for line in out.splitlines():
            m = re.match(r'^(not ok|ok)\s+\d+\s*-?\s*(.*)$', line)
            if not m:
                continue
            if '# SKIP' in line:
                skipped += 1
            elif m.group(1) == 'ok':
                ok += 1
            else:
                failed += 1
        if rc != 0 and failed == 0:
            failed = 1  # crashed or exited non-zero without a TAP failure line
        results['passed'] += ok
        results['failed'] += failed
        results['skipped'] += skipped
        status = 'FAIL' if failed else 'ok'
        print('%-4s unit %-32s %3d passed %2d failed %2d skipped  %.1fs'
              % (status, name, ok, failed, skipped, time.time() - t0))
        if failed:
            print('\n'.join('    ' + l for l in out.splitlines()[-60:]))


def run_pytest(build, pattern, results):
    tdir = os.path.join(ROOT, 'tests', 'integration')
    files = sorted(f for f in os.listdir(tdir) if f.startswith('test_') and f.endswith('.py'))
    if pattern:
        files = [f for f in files if re.search(pattern, f)]
    if not files:
        return
    junit = os.path.join(build, 'pytest.xml')
    if os.path.exists(junit):
        os.unlink(junit)
    env = dict(os.environ, TB_ROOT=ROOT, TB_BUILD=build, PYTHONUNBUFFERED='1')
    cmd = [sys.executable, '-m', 'pytest', '-q', '-rfEs', '-p', 'no:cacheprovider',
           '--junitxml', junit] + [os.path.join(tdir, f) for f in files]
    print('pytest: ' + ' '.join(files))
    p = subprocess.run(cmd, cwd=ROOT, env=env)
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        results['failed'] += 1
        return
    suites = [root] if root.tag == 'testsuite' else list(root)
    for s in suites:
        tests = int(s.get('tests', 0))
        fail = int(s.get('failures', 0)) + int(s.get('errors', 0))
        skip = int(s.get('skipped', 0))
        results['passed'] += tests - fail - skip
        results['failed'] += fail
        results['skipped'] += skip
    if p.returncode not in (0, 1, 5) and results['failed'] == 0:
        results['failed'] += 1


def run_fuzz(build, pattern, results, runs):
    fdir = os.path.join(build, 'tests', 'fuzz')
    if not os.path.isdir(fdir):
        return
    for name in sorted(os.listdir(fdir)):
        path = os.path.join(fdir, name)
        if not name.startswith('fuzz_') or '.' in name or not os.access(path, os.X_OK):
            continue
        if pattern and not re.search(pattern, name):
            continue
        corpus = os.path.join(ROOT, 'tests', 'fuzz', 'corpus', name[len('fuzz_'):])
        # libFuzzer writes new inputs into its first corpus folder: give it a scratch one so the
        # repository's seed corpus stays as committed.
        scratch = tempfile.mkdtemp(prefix='tb-fuzz-')
        args = [path, '-runs=%d' % runs, '-max_len=65536', '-rss_limit_mb=2048', scratch]
        if os.path.isdir(corpus):
            args.append(corpus)
        t0 = time.time()
        p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
        shutil.rmtree(scratch, ignore_errors=True)
        ok = p.returncode == 0
        results['passed' if ok else 'failed'] += 1
        print('%-4s fuzz %-32s %d runs  %.1fs' % ('ok' if ok else 'FAIL', name, runs,
                                                   time.time() - t0))
        if not ok:
            print('\n'.join('    ' + l for l in (p.stdout + p.stderr).splitlines()[-40:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', action='append', default=None,
                    help='build folder to test (repeatable); default build/release')
    ap.add_argument('--only', choices=['unit', 'py', 'fuzz'], default=None)
    ap.add_argument('-k', dest='pattern', default=None, help='regex on test file names')
    ap.add_argument('--fuzz-runs', type=int, default=20000)
    a = ap.parse_args()
    builds = [os.path.abspath(b) for b in (a.build or [os.path.join(ROOT, 'build', 'release')])]
    results = {'passed': 0, 'failed': 0, 'skipped': 0}
    t0 = time.time()
    for build in builds:
        print('== %s' % os.path.relpath(build, ROOT))
        if a.only in (None, 'unit'):
            run_unit(build, a.pattern, results)
        if a.only in (None, 'py'):
            run_pytest(build, a.pattern, results)
        if a.only in (None, 'fuzz'):
            run_fuzz(build, a.pattern, results, a.fuzz_runs)
    print('suite time %.0f s' % (time.time() - t0))
    print('%d passed, %d failed, %d skipped' % (results['passed'], results['failed'],
                                              results['skipped']))
    sys.exit(1 if results['failed'] else 0)


if __name__ == '__main__':
    main()
