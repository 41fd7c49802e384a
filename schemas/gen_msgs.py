#!/usr/bin/env python3
"""Generates tb_msgs.h (message structs, stable type ids, the schema's version and fingerprint) and
tb_msgs_desc.c (the field tables the generic codec in tb_codec.c walks: one set per schema minor,
so the host can read a plugin built against an older minor with that minor's struct layouts) from
schemas/messages.yaml.  It refuses a file that breaks the compatibility rules written at its top
as far as one file shows them (ids, `since` markers, append-only fields).

usage: gen_msgs.py messages.yaml out/tb_msgs.h out/tb_msgs_desc.c
"""
import re
import sys

import yaml

SCALARS = {
    'bool': ('bool', 'TB_FT_BOOL'),
    'i64': ('int64_t', 'TB_FT_I64'),
    'u64': ('uint64_t', 'TB_FT_U64'),
    'f64': ('double', 'TB_FT_F64'),
}
ARRAYS = {
    'i32[]': ('int32_t', 'TB_FT_I32_ARR'),
    'u64[]': ('uint64_t', 'TB_FT_U64_ARR'),
    'f64[]': ('double', 'TB_FT_F64_ARR'),
    'str[]': ('const char *', 'TB_FT_STR_ARR'),
}
NAME_RE = re.compile(r'^[a-z][a-z0-9_]*$')


def fail(msg):
    sys.stderr.write('gen_msgs: %s\n' % msg)
    sys.exit(2)


def is_int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def load_schema(doc, path):
    sc = doc.get('schema')
    if not isinstance(sc, dict):
        fail('%s: no schema: {major, minor, abi_minor} block' % path)
    if not is_int(sc.get('major'), 1, 65535) or not is_int(sc.get('minor'), 0, 65535):
        fail('schema: major must be >= 1 and minor >= 0')
    abi = sc.get('abi_minor')
    if not isinstance(abi, list) or len(abi) != sc['minor'] + 1 or \
            not all(is_int(a, 0, 65535) for a in abi) or abi != sorted(set(abi)):
        fail('schema.abi_minor: one increasing ABI minor per schema minor 0..%d' % sc['minor'])
    return sc


def check_message(msgs, mname, m, minor):
    if not NAME_RE.match(mname):
        fail('bad message name %r' % mname)
    if not is_int(m.get('version'), 1, 1 << 31):
        fail('%s: version must be a positive integer' % mname)
    if not is_int(m.get('id'), 1, 65535):
        fail('%s: id must be an integer 1..65535 (stable: never renumber one)' % mname)
    msince = m.get('since', 0)
    if not is_int(msince, 0, minor):
        fail('%s: since must be a schema minor 0..%d' % (mname, minor))
    if len(m.get('fields', {})) > 64:
        fail('%s: more than 64 fields (the decoder tracks them in one 64-bit mask)' % mname)
    last = msince
    for fname, f in m.get('fields', {}).items():
        if not NAME_RE.match(fname) or fname == 'v':
            fail('%s: bad field name %r' % (mname, fname))
        t = f.get('type')
        base = t[:-2] if isinstance(t, str) and t.endswith('[]') else t
        if t not in SCALARS and t not in ARRAYS and t not in ('str', 'bin') \
                and base not in msgs:
            fail('%s.%s: unknown type %r' % (mname, fname, t))
        since = f.get('since', msince)
        if not is_int(since, msince, minor):
            fail('%s.%s: since must be a schema minor %d..%d' % (mname, fname, msince, minor))
        if since < last:
            fail('%s.%s: a field added in a minor goes after every older field (the C struct '
                 'only grows at its end)' % (mname, fname))
        if since > msince and f.get('required', False):
            fail('%s.%s: a field added in a minor must be optional (a required one bumps the '
                 'version and schema.major)' % (mname, fname))
        if base in msgs and msgs[base].get('since', 0) > since:
            fail('%s.%s: message %s does not exist in schema minor %d' % (mname, fname, base,
                                                                         since))
        last = since
        f['since'] = since
    m['since'] = msince


def load(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    msgs = doc.get('messages')
    if not isinstance(msgs, dict) or not msgs:
        fail('%s: no messages' % path)
    sc = load_schema(doc, path)
    ids = {}
    for mname, m in msgs.items():
        check_message(msgs, mname, m, sc['minor'])
        if m['id'] in ids:
            fail('%s: id %d is already %s\'s' % (mname, m['id'], ids[m['id']]))
        ids[m['id']] = mname
    return sc, msgs


def fields_at(m, minor):
    return [(n, f) for n, f in m.get('fields', {}).items() if f['since'] <= minor]


def fingerprint(msgs, minor):
    """FNV-1a 64 of a canonical text of every message and field of schema minor `minor`."""
    parts = []
    for mname in sorted((n for n in msgs if msgs[n]['since'] <= minor), key=lambda n: msgs[n]['id']):
        m = msgs[mname]
        fl = ','.join('%s:%s:%s' % (n, f['type'], 'r' if f.get('required') else 'o')
                      for n, f in fields_at(m, minor))
        parts.append('%d %s v%d{%s}' % (m['id'], mname, m['version'], fl))
    h = 0xcbf29ce484222325
    for b in ';'.join(parts).encode():
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def struct_members(msgs, mname, minor=None):
    """C members of a message's struct (of its fields at schema `minor`; None: every field)."""
    out = []
    for fname, f in msgs[mname].get('fields', {}).items():
        if minor is not None and f['since'] > minor:
            continue
        t = f['type']
        doc = f.get('doc', '')
        req = f.get('required', False)
        since = 'schema minor %d. ' % f['since'] if f['since'] > msgs[mname]['since'] else ''
        cmt = ('/* %s%s%s */' % (since, 'required. ' if req else '', doc)).replace('/*  */', '')
        if t in SCALARS:
            out.append('    %s %s; %s' % (SCALARS[t][0], fname, cmt))
            if not req:
                out.append('    bool has_%s;' % fname)
        elif t == 'str':
            out.append('    const char *%s; %s' % (fname, cmt))
        elif t == 'bin':
            out.append('    const uint8_t *%s; %s' % (fname, cmt))
            out.append('    size_t %s_len;' % fname)
        elif t in ARRAYS:
            ctype = ARRAYS[t][0]
            ptr = 'const char *const *' if t == 'str[]' else 'const %s *' % ctype
            out.append('    %s%s; %s' % (ptr, fname, cmt))
            out.append('    size_t %s_count;' % fname)
        elif t.endswith('[]'):
            out.append('    const struct tb_msg_%s *%s; %s' % (t[:-2], fname, cmt))
            out.append('    size_t %s_count;' % fname)
        else:
            out.append('    const struct tb_msg_%s *%s; %s' % (t, fname, cmt))
    return [l.rstrip() for l in out]


def by_id(msgs):
    return sorted(msgs, key=lambda n: msgs[n]['id'])


def gen_header(sc, msgs):
    names = by_id(msgs)
    top = max(msgs[n]['id'] for n in names)
    h = ['/* Generated by schemas/gen_msgs.py from schemas/messages.yaml: do not edit. */',
         '#ifndef TB_MSGS_H', '#define TB_MSGS_H', '',
         '#include <stdbool.h>', '#include <stddef.h>', '#include <stdint.h>', '',
         '#ifdef __cplusplus', 'extern "C" {', '#endif', '',
         '/* The message schema these structs are: a peer of the same major and any minor',
         ' * interoperates (docs/bus.md); the fingerprint identifies major.minor exactly. */',
         '#define TB_SCHEMA_MAJOR %d' % sc['major'],
         '#define TB_SCHEMA_MINOR %d' % sc['minor'],
         '#define TB_SCHEMA_FINGERPRINT 0x%016xULL' % fingerprint(msgs, sc['minor']),
         '/* The plugin ABI minor (TB_ABI_MINOR) that first carried this schema minor. */',
         '#define TB_SCHEMA_ABI_MINOR %d' % sc['abi_minor'][-1], '',
         '/* Message type ids, stable across versions: the first argument of tb_host.msg_encode /',
         ' * msg_decode. */',
         'typedef enum {']
    for n in names:
        h.append('    TB_MSG_%s = %d,' % (n.upper(), msgs[n]['id']))
    h.append('    TB_MSG__COUNT = %d /* one past the largest id */' % (top + 1))
    h.append('} tb_msg_type_t;')
    h.append('')
    for n in names:
        h.append('#define TB_MSG_%s_VERSION %d' % (n.upper(), msgs[n]['version']))
    h.append('')
    # forward declarations so nested types may appear in any order
    for n in names:
        h.append('struct tb_msg_%s;' % n)
    h.append('')
    for n in names:
        since = ', schema minor %d' % msgs[n]['since'] if msgs[n]['since'] else ''
        h.append('/* %s (id %d, version %d%s) */' % (msgs[n].get('doc', n), msgs[n]['id'],
                                                     msgs[n]['version'], since))
        h.append('struct tb_msg_%s {' % n)
        members = struct_members(msgs, n)
        h.extend(members if members else ['    int unused_;'])
        h.append('};')
        h.append('')
    h += ['#ifdef __cplusplus', '}', '#endif', '', '#endif /* TB_MSGS_H */', '']
    return '\n'.join(h)


def changed_after(msgs, n, minor, seen=None):
    """True when message n's layout at `minor` differs from its newest (it or a nested message
    gained fields after `minor`)."""
    seen = seen or set()
    if n in seen:
        return False
    seen = seen | {n}
    for f in msgs[n].get('fields', {}).values():
        t = f['type']
        base = t[:-2] if t.endswith('[]') else t
        if f['since'] > minor or (base in msgs and changed_after(msgs, base, minor, seen)):
            return True
    return False


def field_row(msgs, n, fname, f, sfx, wire=False):
    t = f['type']
    req = 'true' if f.get('required', False) else 'false'
    off = 'offsetof(struct tb_msg_%s, %s)' % (n, fname)
    aux = '0'
    sub = 'NULL'
    if t in SCALARS:
        ft = SCALARS[t][1]
        if not f.get('required', False):
            aux = 'offsetof(struct tb_msg_%s, has_%s)' % (n, fname)
    elif t == 'str':
        ft = 'TB_FT_STR'
    elif t == 'bin':
        ft = 'TB_FT_BIN'
        aux = 'offsetof(struct tb_msg_%s, %s_len)' % (n, fname)
    elif t in ARRAYS:
        ft = ARRAYS[t][1]
        aux = 'offsetof(struct tb_msg_%s, %s_count)' % (n, fname)
    elif t.endswith('[]'):
        ft = 'TB_FT_MSG_ARR'
        aux = 'offsetof(struct tb_msg_%s, %s_count)' % (n, fname)
        sub = '&%s' % desc_name(msgs, t[:-2], sfx, wire)
    else:
        ft = 'TB_FT_MSG'
        sub = '&%s' % desc_name(msgs, t, sfx, wire)
    return '    {"%s", %d, %s, %s, %s, %s, %s},' % (fname, len(fname), ft, req, off, aux, sub)


def desc_name(msgs, n, minor, wire=False):
    """The descriptor of message n as schema `minor` lays it out (None: the newest).  wire: the
    fields of `minor` over today's struct (what a process pinned to `minor` decodes into)."""
    if minor is None or not changed_after(msgs, n, minor):
        return 'tb_msg_desc_%s' % n
    return 's_%s_%s_m%d' % ('wire' if wire else 'desc', n, minor)


def gen_descs(msgs, names, minor, wire=False):
    """Field rows and descriptors of every message at `minor` (None: newest) that differs.
    wire: sized as today's structs (the process pin) rather than as minor's prefixes (plugins)."""
    c = []
    for n in names:
        m = msgs[n]
        if minor is not None and (m['since'] > minor or not changed_after(msgs, n, minor)):
            continue
        sfx = '' if minor is None else '_%s%d' % ('w' if wire else 'm', minor)
        fields = fields_at(m, minor) if minor is not None else list(m.get('fields', {}).items())
        rows = [field_row(msgs, n, fname, f, minor, wire) for fname, f in fields]
        size = 'sizeof(struct tb_msg_%s)' % n
        if minor is not None and not wire:
            # the struct as a plugin built against schema `minor` declared it: a prefix
            c.append('struct s_%s%s {' % (n, sfx))
            members = struct_members(msgs, n, minor)
            c.extend(members if members else ['    int unused_;'])
            c.append('};')
            size = 'sizeof(struct s_%s%s)' % (n, sfx)
        if rows:
            c.append('static const struct tb_field_desc s_fields_%s%s[] = {' % (n, sfx))
            c.extend(rows)
            c.append('};')
            fp = 's_fields_%s%s' % (n, sfx)
        else:
            fp = 'NULL'
        storage = 'const' if minor is None else 'static const'
        c.append('%s struct tb_msg_desc %s = {"%s", %d, %s, %s, %d};'
                 % (storage, desc_name(msgs, n, minor, wire), n, m['version'], size, fp,
                    len(rows)))
        c.append('')
    return c


def desc_table(msgs, names, sc, minor, wire):
    newest = minor == sc['minor']
    tname = 'tb_msg_descs' if newest else 's_%s_m%d' % ('wire' if wire else 'descs', minor)
    if newest and wire:
        return []
    c = ['%sconst struct tb_msg_desc *const %s[TB_MSG__COUNT] = {'
         % ('' if newest else 'static ', tname)]
    for n in names:
        if msgs[n]['since'] <= minor:
            c.append('    [TB_MSG_%s] = &%s,' % (n.upper(),
                     desc_name(msgs, n, None if newest else minor, wire)))
    return c + ['};', '']


def gen_source(sc, msgs):
    names = by_id(msgs)
    c = ['/* Generated by schemas/gen_msgs.py from schemas/messages.yaml: do not edit. */',
         '#include "tb_codec.h"', '']
    for n in names:
        c.append('extern const struct tb_msg_desc tb_msg_desc_%s;' % n)
    for minor in range(sc['minor']):
        for n in names:
            if msgs[n]['since'] <= minor and changed_after(msgs, n, minor):
                c.append('static const struct tb_msg_desc s_desc_%s_m%d;' % (n, minor))
                c.append('static const struct tb_msg_desc s_wire_%s_m%d;' % (n, minor))
    c.append('')
    c.extend(gen_descs(msgs, names, None))
    for minor in range(sc['minor']):
        c.append('/* ---- schema %d.%d, as plugins built against it lay out the structs ---- */'
                 % (sc['major'], minor))
        c.extend(gen_descs(msgs, names, minor))
        c.append('/* ---- schema %d.%d over today\'s structs (a process pinned to it) ---- */'
                 % (sc['major'], minor))
        c.extend(gen_descs(msgs, names, minor, wire=True))
    for minor in range(sc['minor'] + 1):
        c.extend(desc_table(msgs, names, sc, minor, False))
        c.extend(desc_table(msgs, names, sc, minor, True))
    for minor in range(sc['minor'] + 1):
        tname = 'tb_msg_descs' if minor == sc['minor'] else 's_descs_m%d' % minor
        c += ['static int s_encode_m%d(tb_msg_type_t type, const void *msg, struct tb_buf *out)'
              % minor, '{', '    return tb_codec_encode_in(%s, type, msg, out);' % tname, '}', '',
              'static int s_decode_m%d(tb_msg_type_t type, const void *data, size_t len, '
              'void **msg_out,' % minor,
              '                       char *err, size_t err_len)', '{',
              '    return tb_codec_decode_in(%s, type, data, len, msg_out, err, err_len);' % tname,
              '}', '']
    c.append('const struct tb_codec_layout tb_codec_layouts[TB_SCHEMA_MINOR + 1] = {')
    for minor in range(sc['minor'] + 1):
        newest = minor == sc['minor']
        tname = 'tb_msg_descs' if newest else 's_descs_m%d' % minor
        wname = 'tb_msg_descs' if newest else 's_wire_m%d' % minor
        c.append('    {%d, %d, 0x%016xULL, %s, %s, s_encode_m%d, s_decode_m%d},'
                 % (minor, sc['abi_minor'][minor], fingerprint(msgs, minor), tname, wname, minor,
                    minor))
    c.append('};')
    c.append('')
    return '\n'.join(c)


def main():
    if len(sys.argv) != 4:
        fail('usage: gen_msgs.py messages.yaml tb_msgs.h tb_msgs_desc.c')
    sc, msgs = load(sys.argv[1])
    with open(sys.argv[2], 'w') as f:
        f.write(gen_header(sc, msgs))
    with open(sys.argv[3], 'w') as f:
        f.write(gen_source(sc, msgs))


if __name__ == '__main__':
    main()
