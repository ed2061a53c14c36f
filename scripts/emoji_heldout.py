#!/usr/bin/env python3
"""Names the EmojiOne drawings listed in a `vkpeft embed` output the way Noto names them.

Usage: emoji_heldout.py EMBED.safetensors OUT.jsonl
EMBED.safetensors is `vkpeft embed --images emoji-emojione:val:FRACTION:SEED`'s output: its
metadata lists the image files of that split (the split is vkpeft's own, key-grouped, so the same
emoji are held out of emoji-noto). OUT.jsonl gets {"path", "caption", "name"} per file whose code
points Noto's emoji-test.txt names (the first line of a key names it, as datasets/pairs_emoji.c).
The CLIP and diffusion demos (scripts/demo) use it for their held-out sets; the diffusion demo
imports `embedded_files` from it.
"""
import glob, json, os, struct, sys


def embedded_files(emb):
    """The image files a `vkpeft embed` output lists in its safetensors metadata, in its order."""
    with open(emb, "rb") as f:
        return json.loads(json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]["images"])


def main(emb, out):
    test = glob.glob("/usr/share/rubygems-integration/all/gems/tanuki_emoji-*/vendor/unicode/emoji-test.txt")[0]
    key = lambda cps: "-".join(format(int(c, 16), "x") for c in cps if int(c, 16) not in (0xFE0F, 0x200D))
    names = {}
    for line in open(test, encoding="utf-8"):
        if line.startswith("#") or ";" not in line or "#" not in line:
            continue
        names.setdefault(key(line.split(";")[0].split()), line.split("#", 1)[1].split(None, 2)[2].strip().lower())
    n = 0
    with open(out, "w") as o:
        for p in embedded_files(emb):
            nm = names.get(key(os.path.basename(p)[:-4].split("-")))
            if nm:
                o.write(json.dumps({"path": p, "caption": nm, "name": nm}) + "\n")
                n += 1
    print(f"held out: {n} EmojiOne emoji, named as Noto names them ({out})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
