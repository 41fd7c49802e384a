"""The etcd v3 client (bus/tb_etcd.c) against real etcd servers, through tests/tools/tb_etcd_cli:
conditional puts, listings, leases that expire or are kept alive, watches in revision order that
resume on another member after the one they used dies, and the refusals (compacted revisions, no
endpoint answering)."""
import base64
import subprocess
import time


import exitcheck
from conftest import run_tool, tool
from etcd_cluster import Cluster, etcd, need_etcd  # noqa: F401 (etcd: a fixture)


def cli(endpoints, *args, expect=0):
    return run_tool('tb_etcd_cli', [endpoints] + list(args), expect=expect, text=True,
                    timeout=60).stdout.splitlines()


def test_put_if_absent_list_delete(etcd):
    ep = etcd.endpoints()
    assert cli(ep, 'put', '/t/a', '1') == ['created 1']
    assert cli(ep, 'put-absent', '/t/a', '2') == ['created 0']
    assert cli(ep, 'put-absent', '/t/b', 'two words') == ['created 1']
    cli(ep, 'put', '/u/x', 'outside the prefix')
    out = cli(ep, 'list', '/t/')
    assert out[:2] == ['/t/a=1', '/t/b=two words']
    assert out[2].startswith('revision ') and int(out[2].split()[1]) >= 3
    cli(ep, 'del', '/t/a')
    cli(ep, 'del', '/t/absent')
    assert cli(ep, 'list', '/t/')[:-1] == ['/t/b=two words']


def test_lease_expires_without_keepalive_and_survives_with_it(etcd):
    ep = etcd.endpoints()
    out = cli(ep, 'lease', '1', '/l/gone', 'v', '0')
    assert out[1] == 'created 1'
    lease = out[0].split()[1]
    kept = cli(ep, 'lease', '2', '/l/kept', 'v', '3')
    assert kept[1] == 'created 1'
    assert [ln for ln in kept[2:] if ln.startswith('renewed')], kept
    # /l/gone's lease (1 s) ran out while /l/kept was renewed for 3 s.
    assert cli(ep, 'list', '/l/')[:-1] == ['/l/kept=v']
    assert cli(ep, 'keepalive', lease) == ['expired']
    time.sleep(2.5)
    assert cli(ep, 'list', '/l/')[:-1] == []


def test_lease_revoke_deletes_its_keys(etcd):
    ep = etcd.endpoints()
    cli(ep, 'lease', '30', '/r/k', 'v', '0', 'revoke')
    assert cli(ep, 'list', '/r/')[:-1] == []


def test_watch_delivers_history_in_order(etcd):
    ep = etcd.endpoints()
    cli(ep, 'put', '/w/a', '1')
    rev = int(cli(ep, 'list', '/w/')[-1].split()[1])
    cli(ep, 'put', '/w/b', '2')
    cli(ep, 'del', '/w/a')
    cli(ep, 'put', '/x/other', 'not watched')
    out = cli(ep, 'watch', '/w/', str(rev), '3')
    assert out == ['put /w/a=1 %d' % rev, 'put /w/b=2 %d' % (rev + 1),
                   'delete /w/a %d' % (rev + 2)]


def test_watch_sees_live_events(etcd):
    ep = etcd.endpoints()
    p = subprocess.Popen([tool('tb_etcd_cli'), ep, 'watch', '/live/', '0', '2'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=exitcheck.sanitizer_env())
    time.sleep(1.0)  # the watch is created before the writes (from "now")
    cli(ep, 'put', '/live/k', 'v1')
    cli(ep, 'put', '/live/k', 'v2')
    out, err = p.communicate(timeout=30)
    exitcheck.check_exit(p.returncode, out + err, 0, 'tb_etcd_cli watch')
    assert [ln.rsplit(' ', 1)[0] for ln in out.splitlines()] == ['put /live/k=v1',
                                                                 'put /live/k=v2']


def test_compacted_revision_is_refused(etcd):
    ep = etcd.endpoints()
    for i in range(4):
        cli(ep, 'put', '/c/k', str(i))
    rev = int(cli(ep, 'list', '/c/')[-1].split()[1])
    etcd.post('m0', '/v3/kv/compaction', {'revision': rev})
    p = run_tool('tb_etcd_cli', [ep, 'watch', '/c/', '1', '1'], expect=1, text=True, timeout=60)
    assert 'compacted' in p.stderr and 'list again' in p.stderr, p.stderr


def test_no_endpoint_answering_is_an_error_naming_it():
    p = run_tool('tb_etcd_cli', ['http://127.0.0.1:1', 'list', '/'], expect=1, text=True)
    assert 'no endpoint answered' in p.stderr and '127.0.0.1:1' in p.stderr, p.stderr


def test_cluster_member_loss_watch_resumes_without_gap_or_duplicate():
    need_etcd()
    c = Cluster(3).start()
    try:
        ep = c.endpoints()  # m0 first: the watch streams from m0
        start = int(cli(ep, 'list', '/m/')[-1].split()[1]) + 1
        p = subprocess.Popen([tool('tb_etcd_cli'), ep, 'watch', '/m/', str(start), '6'],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=exitcheck.sanitizer_env())
        others = c.endpoints(['m1', 'm2'])
        for i in range(3):
            cli(others, 'put', '/m/k%d' % i, str(i))
        time.sleep(1.0)
        c.kill('m0')
        for i in range(3, 6):
            cli(others, 'put', '/m/k%d' % i, str(i))
        out, err = p.communicate(timeout=60)
        exitcheck.check_exit(p.returncode, out + err, 0, 'tb_etcd_cli watch')
        events = [ln for ln in out.splitlines() if ln.startswith('put ')]
        assert [e.split()[1] for e in events] == ['/m/k%d=%d' % (i, i) for i in range(6)], out
        revs = [int(e.split()[2]) for e in events]
        assert revs == list(range(revs[0], revs[0] + 6)), out
        assert any(ln.startswith('resumed') for ln in out.splitlines()), out
        # Writes still succeed through the list, with the dead member first in it.
        assert cli(c.endpoints(), 'put', '/m/after', 'x') == ['created 1']
    finally:
        c.stop()


def test_keys_are_base64_on_the_wire(etcd):
    ep = etcd.endpoints()
    cli(ep, 'put', '/b/ключ', 'значение')
    got = etcd.post('m0', '/v3/kv/range', {'key': base64.b64encode('/b/ключ'.encode()).decode()})
    assert base64.b64decode(got['kvs'][0]['value']).decode() == 'значение'
    assert cli(ep, 'list', '/b/')[0] == '/b/ключ=значение'
