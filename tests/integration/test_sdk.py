"""The plugin SDK: a plugin built out of tree with only the installed headers, the helper library
and pkg-config loads, validates its config and serves on the bus."""
import os
import subprocess

from conftest import BUILD, ROOT
from tbproc import Turbine, free_port, run, write_yaml


def test_out_of_tree_plugin(tmp_path):
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(BUILD, 'lib', 'pkgconfig'))
    cflags = subprocess.run(['pkg-config', '--cflags', 'turbine-plugin'], env=env, check=True,
                            capture_output=True, text=True).stdout.split()
    libs = subprocess.run(['pkg-config', '--libs', 'turbine-plugin'], env=env, check=True,
                          capture_output=True, text=True).stdout.split()
    assert '-ltb_sdk' in libs, libs
    so = tmp_path / 'tb_hello.so'
    src = os.path.join(ROOT, 'examples', 'plugin-hello', 'hello.c')
    subprocess.run(['cc', '-std=c11', '-D_GNU_SOURCE', '-Wall', '-Wextra', '-Werror', '-shared',
                    '-fPIC', '-fvisibility=hidden'] + cflags + ['-o', str(so), src] + libs
                   + ['-lpthread'],
                   check=True)
    # the plugin exports exactly one symbol
    syms = subprocess.run(['nm', '-D', '--defined-only', str(so)], capture_output=True,
                          text=True).stdout
    exported = [l.split()[-1] for l in syms.splitlines() if ' T ' in l]
    assert exported == ['tb_plugin_entry'], exported

    rc, out = run('plugins', 'hello', '--path', str(tmp_path))
    assert rc == 0 and 'hello 1.0.0' in out and 'greeting' in out, out

    port = free_port()
    path = write_yaml(f"""namespace: sdk
plugin_path: [{tmp_path}]
registry:
  listen: tcp://127.0.0.1:{port}
components:
  - name: greeter
    plugin: hello
    config:
      greeting: bonjour
""")
    t = Turbine('serve', path)
    try:
        t.wait_for("component 'greeter' started")
        assert "saying 'bonjour'" in t.output
        rc, out = run('call', '--join', f'tcp://127.0.0.1:{port}', 'sdk.greeter.hello',
                      '--data', 'monde', timeout=20)
        assert rc == 0 and 'final 14: bonjour, monde' in out, out
        assert t.stop() == 0
    finally:
        t.kill()
