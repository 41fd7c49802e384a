"""The microkernel links only the bus, libyaml and libc: no tokenizer, regex, Unicode or JSON
library (ARCHITECTURE.md, "core/").  `turbine tokenize`/`detokenize` run the turbine-tokenize
tool installed beside it, which is where the tokenizer libraries go."""
import os
import subprocess

from conftest import BUILD

ALLOWED = {
    'turbine': {'libturbine-bus.so', 'libyaml-0.so.2', 'libc.so.6', 'libm.so.6', 'libdl.so.2',
                'libpthread.so.0'},
    'libturbine-bus.so': {'libzmq.so.5', 'libmsgpackc.so.2', 'libc.so.6', 'libm.so.6',
                          'libdl.so.2', 'libpthread.so.0'},
}


# The sanitizer runtimes of the asan build are the build mode's, not dependencies.
SANITIZER_RUNTIMES = ('libasan.so', 'libubsan.so')


def _needed(path):
    out = subprocess.run(['readelf', '-d', path], capture_output=True, text=True,
                         check=True).stdout
    names = {line.split('[', 1)[1].split(']', 1)[0] for line in out.splitlines()
             if '(NEEDED)' in line}
    return {n for n in names if not n.startswith(SANITIZER_RUNTIMES)}


def test_turbine_needs_only_bus_yaml_libc():
    needed = _needed(os.path.join(BUILD, 'bin', 'turbine'))
    assert 'libturbine-bus.so' in needed and 'libyaml-0.so.2' in needed, needed
    assert needed <= ALLOWED['turbine'], needed - ALLOWED['turbine']


def test_bus_needs_only_zmq_msgpack_libc():
    needed = _needed(os.path.join(BUILD, 'lib', 'libturbine-bus.so'))
    assert 'libzmq.so.5' in needed and 'libmsgpackc.so.2' in needed, needed
    assert needed <= ALLOWED['libturbine-bus.so'], needed - ALLOWED['libturbine-bus.so']


def test_tokenize_runs_the_separate_tool():
    tool = os.path.join(BUILD, 'bin', 'turbine-tokenize')
    assert os.access(tool, os.X_OK)
    assert 'libutf8proc.so.2' in _needed(tool) or 'libpcre2-8.so.0' in _needed(tool)
    # the CLI hands its arguments over: usage errors come back with the tool's status
    out = subprocess.run([os.path.join(BUILD, 'bin', 'turbine'), 'tokenize'],
                         capture_output=True, text=True)
    assert out.returncode == 2 and 'usage: turbine tokenize' in out.stderr, out
