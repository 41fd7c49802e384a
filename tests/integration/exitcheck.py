"""How the suite tells a refusal from a crash.

Under the sanitizers a report ends the process with a status of its own (ASan and LeakSanitizer
ASAN_EXITCODE, UBSan UBSAN_EXITCODE), never the 1 or 2 that our programs use for a refusal; a
death by signal (negative status from subprocess) is a failure everywhere; and any sanitizer
report in the output is a failure whatever the status.  tests/run.py, tools/test.sh and
conftest.py all apply sanitizer_env() so that running any of them directly is safe.

check_exit() is the one assertion every test that runs a program to completion goes through;
run() is subprocess.run with that check."""
import os
import signal
import subprocess

ASAN_EXITCODE = 86   # AddressSanitizer and LeakSanitizer reports
UBSAN_EXITCODE = 87  # UndefinedBehaviorSanitizer reports
SANITIZER_EXITCODES = {ASAN_EXITCODE: 'an AddressSanitizer or LeakSanitizer report',
                       UBSAN_EXITCODE: 'an UndefinedBehaviorSanitizer report'}
SANITIZER_MARKS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:',
                   'ERROR: UndefinedBehaviorSanitizer', 'SUMMARY: UndefinedBehaviorSanitizer',
                   'SUMMARY: AddressSanitizer')

_REQUIRED = {
    'ASAN_OPTIONS': (('detect_leaks', '1'), ('exitcode', str(ASAN_EXITCODE)),
                     ('abort_on_error', '0')),
    'UBSAN_OPTIONS': (('print_stacktrace', '1'), ('exitcode', str(UBSAN_EXITCODE)),
                      ('halt_on_error', '1')),
}


def _merge(value, required):
    """`value` (a k=v:k=v option string) with every required option set to its value; other
    options the caller chose are kept."""
    opts = [o for o in (value or '').split(':') if o]
    keys = {k for k, _ in required}
    kept = [o for o in opts if o.split('=', 1)[0] not in keys]
    return ':'.join(kept + ['%s=%s' % kv for kv in required])


def sanitizer_env(env=None):
    """Sets ASAN_OPTIONS / UBSAN_OPTIONS in `env` (default os.environ) so that reports have their
    own exit statuses; returns `env`."""
    env = os.environ if env is None else env
    for name, required in _REQUIRED.items():
        env[name] = _merge(env.get(name), required)
    return env


def problem(rc, output):
    """Why (rc, output) is a crash rather than an answer, or None."""
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = 'signal %d' % -rc
        return 'killed by %s' % name
    if rc in SANITIZER_EXITCODES:
        return 'exit status %d: %s' % (rc, SANITIZER_EXITCODES[rc])
    for mark in SANITIZER_MARKS:
        if mark in (output or ''):
            return 'a sanitizer report ("%s") in the output' % mark
    return None


def check_exit(rc, output, expect=None, what='the program'):
    """Fails (AssertionError, with the output's tail) if the program crashed, printed a sanitizer
    report, or (when `expect` is given) exited with any status other than `expect`."""
    why = problem(rc, output)
    if why is None and expect is not None and rc != expect:
        why = 'exit status %r, expected %r' % (rc, expect)
    if why:
        raise AssertionError('%s: %s\n%s' % (what, why, (output or '')[-6000:]))


def run(cmd, expect=0, **kw):
    """subprocess.run(cmd, capture_output=True, **kw), then check_exit against `expect` (None:
    any status that is not a crash).  Returns the CompletedProcess."""
    kw.setdefault('capture_output', True)
    kw.setdefault('timeout', 600)
    p = subprocess.run([str(c) for c in cmd], **kw)
    out = p.stdout or ''
    err = p.stderr or ''
    if isinstance(out, bytes) or isinstance(err, bytes):
        text = (out if isinstance(out, bytes) else out.encode()) + \
            (err if isinstance(err, bytes) else err.encode())
        text = text.decode(errors='replace')
    else:
        text = out + err
    check_exit(p.returncode, text, expect, os.path.basename(str(cmd[0])))
    return p
