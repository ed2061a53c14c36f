#!/usr/bin/env python3
"""Writes the Unicode and HTML tables of the CLIP tokenizer (vlm/clip_tok_*_data.c).

The tables are data only; the C code that uses them is in vlm/clip_tok_*.c. They are generated
from the same Python libraries the reference tokenizers run on, so the C code makes the same
decisions they do:

- character classes for the pre-tokenizer split (\\p{L}, \\p{N}, \\s) from the `regex` module
  (OpenAI's simple_tokenizer.py uses it; Debian: python3-regex);
- lower-casing, Cased / Case_Ignorable (Python's final-sigma rule), canonical decompositions,
  compositions and combining classes (NFC), decimal digits and the fullwidth map (ftfy) from
  Python's unicodedata / str;
- the HTML5 named character references from html.entities (html.unescape, ftfy).

Run from the repository root:  python3 vlm/clip_tok_gen_tables.py
"""
import html
import html.entities
import os
import sys
import unicodedata

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_CP = 0x110000

# Flag bits of clip_tok_class(); keep in sync with clip_tok_internal.h.
F_L, F_N, F_WS, F_ND, F_CASED, F_CASE_IGN = 1, 2, 4, 8, 16, 32


def c_string(s):
    """A C string literal holding the UTF-8 bytes of s (octal escapes: never run into a digit)."""
    out = []
    for b in s.encode("utf-8"):
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


def char_flags():
    re_l, re_n, re_s = regex.compile(r"[\p{L}]"), regex.compile(r"[\p{N}]"), regex.compile(r"\s")
    flags = bytearray(MAX_CP)
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        f = 0
        if re_l.match(ch):
            f |= F_L
        if re_n.match(ch):
            f |= F_N
        if re_s.match(ch):
            f |= F_WS
        if ch.isdecimal():
            f |= F_ND
        # Python's final-sigma rule (str.lower) skips Case_Ignorable characters and then asks
        # whether the character is Cased. Probe str.lower itself:
        #   'A' c 'Σ' ends in 'ς'  <=>  c is case-ignorable or cased
        #   '1' c 'Σ' ends in 'ς'  <=>  c is cased and not case-ignorable
        t1 = ("A" + ch + "\u03a3").lower()[-1] == "\u03c2"
        t2 = ("1" + ch + "\u03a3").lower()[-1] == "\u03c2"
        if t1 and not t2:
            f |= F_CASE_IGN
        if t2:
            f |= F_CASED
        flags[cp] = f
    return flags


def ranges_of(values):
    """[(start, value)] where the value changes, starting at 0."""
    out, prev = [], None
    for cp, v in enumerate(values):
        if v != prev:
            out.append((cp, v))
            prev = v
    return out


def table(f, comment, decl, rows, per_line, fmt, count_name):
    """A C array `decl` of rows (tuples formatted with fmt), per_line to a line, and its count."""
    if comment:
        f.write("// %s\n" % comment)
    f.write(decl + " = {\n")
    for i in range(0, len(rows), per_line):
        f.write("    " + " ".join(fmt % r for r in rows[i:i + per_line]) + "\n")
    f.write("};\n")
    if count_name:
        f.write("const int %s = %d;\n" % (count_name, len(rows)))
    f.write("\n")


def write_unicode(path):
    flags = char_flags()
    class_ranges = ranges_of(flags)

    lower = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        lo = chr(cp).lower()
        if lo == chr(cp):
            continue
        if len(lo) == 1:
            lower.append((cp, ord(lo)))
        elif cp != 0x130:  # U+0130 -> "i\u0307" is handled in clip_tok_unicode.c
            sys.exit("unexpected multi-character lowercase: U+%04X" % cp)

    ccc = [0] * MAX_CP
    for cp in range(MAX_CP):
        if not 0xD800 <= cp <= 0xDFFF:
            ccc[cp] = unicodedata.combining(chr(cp))
    ccc_ranges = []
    start = None
    for cp in range(MAX_CP + 1):
        v = ccc[cp] if cp < MAX_CP else 0
        if start is not None and (cp == MAX_CP or v != ccc[start]):
            ccc_ranges.append((start, cp - 1, ccc[start]))
            start = None
        if start is None and v:
            start = cp

    decomp, pool = [], []
    compose = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF or 0xAC00 <= cp <= 0xD7A3:  # Hangul syllables: algorithmic
            continue
        ch = chr(cp)
        d = unicodedata.normalize("NFD", ch)
        if d != ch:
            decomp.append((cp, len(pool), len(d)))
            pool.extend(ord(c) for c in d)
        m = unicodedata.decomposition(ch)
        if m and not m.startswith("<"):
            parts = [int(p, 16) for p in m.split()]
            # primary composites: two-character canonical mappings that NFC recomposes
            if len(parts) == 2 and unicodedata.normalize("NFC", ch) == ch:
                compose.append((parts[0], parts[1], cp))
    compose.sort()

    width = []
    for cp in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(cp))
        width.append(alt if alt != chr(cp) else None)

    with open(path, "w", encoding="utf-8") as f:
        f.write("// clip_tok_unicode_data.c — GENERATED by vlm/clip_tok_gen_tables.py; do not edit.\n")
        f.write("// Python %s (unicodedata %s), regex %s.\n" % (
            sys.version.split()[0], unicodedata.unidata_version, regex.__version__))
        f.write('#include "clip_tok_internal.h"\n\n')
        table(f, "Flags (CLIP_TOK_L ...) of every code point from `start` up to the next entry's start.",
              "const clip_tok_class_range clip_tok_class_ranges[]", class_ranges, 6, "{0x%X, %d},",
              "clip_tok_class_count")
        table(f, "Single-character lowercase mappings (str.lower), sorted by code point.",
              "const clip_tok_pair clip_tok_lower_map[]", lower, 6, "{0x%X, 0x%X},", "clip_tok_lower_count")
        table(f, "Canonical combining classes (non-zero), as inclusive ranges.",
              "const clip_tok_ccc_range clip_tok_ccc_ranges[]", ccc_ranges, 5, "{0x%X, 0x%X, %d},",
              "clip_tok_ccc_count")
        table(f, "Full canonical decompositions (NFD of one character; Hangul excluded): pool[off..off+len).",
              "const clip_tok_decomp clip_tok_decomps[]", decomp, 5, "{0x%X, %d, %d},", "clip_tok_decomp_count")
        table(f, None, "const uint32_t clip_tok_decomp_pool[]", [(c,) for c in pool], 10, "0x%X,", None)
        table(f, "Primary composites: (first, second) -> composed, sorted by (first, second).",
              "const clip_tok_compose_entry clip_tok_composes[]", compose, 4, "{0x%X, 0x%X, 0x%X},",
              "clip_tok_compose_count")
        f.write("// ftfy's fix_character_width: NFKC of U+FF01..U+FFEF (NULL: unchanged), UTF-8.\n")
        f.write("const char *const clip_tok_width_map[CLIP_TOK_WIDTH_LAST - CLIP_TOK_WIDTH_FIRST + 1] = {\n")
        for i in range(0, len(width), 8):
            f.write("    " + " ".join((c_string(w) if w is not None else "NULL") + "," for w in width[i:i + 8]) + "\n")
        f.write("};\n")


def write_html(path):
    ents = sorted(html.entities.html5.items(), key=lambda kv: kv[0].encode())
    # ftfy also decodes lowercase entity names written in capitals (&EACUTE; -> É) when the
    # capitalised name is not itself a reference (ftfy/chardata.py _build_html_entities).
    upper = {}
    for name, value in html.entities.html5.items():
        if name.endswith(";") and name == name.lower():
            up = "&" + name.upper()
            if html.unescape(up) == up:
                upper[name.upper()] = value.upper()
    upper = sorted(upper.items(), key=lambda kv: kv[0].encode())
    with open(path, "w", encoding="utf-8") as f:
        f.write("// clip_tok_html_data.c — GENERATED by vlm/clip_tok_gen_tables.py; do not edit.\n")
        f.write("// Python %s html.entities.html5 (the WHATWG named character references).\n" %
                sys.version.split()[0])
        f.write('#include "clip_tok_internal.h"\n\n')
        f.write("// Name (without '&', with ';' when the reference has one) -> UTF-8, sorted by name.\n")
        f.write("const clip_tok_entity clip_tok_html5[] = {\n")
        for name, value in ents:
            f.write("    {%s, %s},\n" % (c_string(name), c_string(value)))
        f.write("};\nconst int clip_tok_html5_count = %d;\n\n" % len(ents))
        f.write("// ftfy's extra capitalised names (with ';') -> value.upper(), sorted by name.\n")
        f.write("const clip_tok_entity clip_tok_html_upper[] = {\n")
        for name, value in upper:
            f.write("    {%s, %s},\n" % (c_string(name), c_string(value)))
        f.write("};\nconst int clip_tok_html_upper_count = %d;\n" % len(upper))


if __name__ == "__main__":
    write_unicode(os.path.join(HERE, "clip_tok_unicode_data.c"))
    write_html(os.path.join(HERE, "clip_tok_html_data.c"))
