"""Shared pytest fixtures: where the build, the repository and ../shared are; the sanitizer
options every child process inherits (exitcheck.py); the skip policy of docs/testing.md."""
import os

import pytest

import exitcheck

ROOT = os.environ.get('TB_ROOT') or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get('TB_BUILD') or os.path.join(ROOT, 'build', 'release')
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
ASAN = 'asan' in os.path.basename(os.path.normpath(BUILD))
CI = os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')
# A skip that starts with this is about the machine (an instruction set the CPU lacks); it
# stays a skip under CI=true.  Every other skip is a missing dependency: a failure under CI.
HARDWARE = 'hardware:'

# Sanitizer reports get exit statuses of their own in every process a test starts.
exitcheck.sanitizer_env()


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'pure_python: runs no built program; tests/run.py runs it in the first '
        'build only')


def _ci_skip_to_failure(rep):
    if not (CI and rep.skipped and not hasattr(rep, 'wasxfail')):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason[len('Skipped: '):] if reason.startswith('Skipped: ') else reason
    if reason.startswith(HARDWARE):
        return
    rep.outcome = 'failed'
    rep.longrepr = 'skipped under CI=true (a missing dependency is a failure): ' + reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _ci_skip_to_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _ci_skip_to_failure(outcome.get_result())


@pytest.fixture(scope='session')
def root():
    return ROOT


@pytest.fixture(scope='session')
def build():
    return BUILD


@pytest.fixture(scope='session')
def shared():
    return SHARED


def tool(name):
    """Path of a helper executable built from tests/tools/<name>.c."""
    return os.path.join(BUILD, 'tests', 'tools', name)


def need(path, what=None):
    """Skips (a failure under CI=true) unless `path` exists; returns it."""
    if not os.path.exists(path):
        pytest.skip('%s absent' % (what or path))
    return path


def run_tool(name, args, expect=0, **kw):
    """Runs tests/tools/<name> with `args` and checks its exit (exitcheck.run): `expect` is the
    exact status wanted; a crash or a sanitizer report always fails."""
    exe = tool(name)
    assert os.access(exe, os.X_OK), '%s is not built (scons -Q -j2)' % exe
    return exitcheck.run([exe] + list(args), expect=expect, **kw)
