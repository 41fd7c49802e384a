"""Checks tests/gpu/verify.sh runs on the GPU machine (numpy only): one line per check on stdout,
"PASS detail" or "FAIL detail", exit 0 or 1.

  gpu_check.py logits REF.npy GOT.npy TOL [AGREE]
                                             worst relative error per position
                                             (max |got - ref| / max |ref|) <= TOL and the argmax
                                             agrees at >= AGREE of the positions (default 0.95)
  gpu_check.py tokens REF.json GOT.json       greedy tokens of every request equal
  gpu_check.py same DIR_A DIR_B N             N logits files (0.npy ..) bitwise equal
"""
import json
import os
import sys

import numpy as np


def rel_err(got, ref):
    ref = np.asarray(ref, dtype=np.float64)
    diff = np.abs(np.asarray(got, dtype=np.float64) - ref).max(axis=-1)
    return diff / np.abs(ref).max(axis=-1)


def main(argv):
    what = argv[1]
    if what == 'logits':
        ref, got, tol = np.load(argv[2]), np.load(argv[3]), float(argv[4])
        min_agree = float(argv[5]) if len(argv) > 5 else 0.95
        if ref.shape != got.shape:
            print('FAIL shapes %s vs %s' % (ref.shape, got.shape))
            return 1
        rel = rel_err(got, ref)
        agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
        ok = rel.max() <= tol and agree >= min_agree
        print('%s worst %.3g (tolerance %.0e), argmax agreement %.2f'
              % ('PASS' if ok else 'FAIL', rel.max(), tol, agree))
        return 0 if ok else 1
    if what == 'tokens':
        with open(argv[2]) as f:
            ref = [r['generated'] for r in json.load(f)['requests']]
        with open(argv[3]) as f:
            got = [r['generated'] for r in json.load(f)['requests']]
        same = sum(a == b for a, b in zip(ref, got))
        ok = same == len(ref) == len(got)
        first = next((i for i, (a, b) in enumerate(zip(ref[0], got[0])) if a != b), None)
        print('%s %d of %d requests equal%s' % ('PASS' if ok else 'FAIL', same, len(ref),
                                                '' if ok else ' (first difference at %s)' % first))
        return 0 if ok else 1
    if what == 'same':
        n = int(argv[4])
        bad = [i for i in range(n)
               if not np.array_equal(np.load(os.path.join(argv[2], '%d.npy' % i)),
                                     np.load(os.path.join(argv[3], '%d.npy' % i)))]
        print('%s %d of %d logits files bitwise equal' % ('FAIL' if bad else 'PASS', n - len(bad), n))
        return 1 if bad else 0
    print('FAIL unknown check %s' % what)
    return 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
