"""The tiny pretrained models, shipped built: a fresh clone does not spend minutes of CPU making each of them (on a
busy 2-core machine, 2026-12-06: 355 s for `tiny`, 2,217 s for `tiny-student`, 2,663 s for
`tiny-code`; installing a shipped copy: seconds).

    python -m rl.tiny.shipped            # re-ship: copy the cached builds (made by rl/tiny/build.py) into rl/tiny/shipped/
    python -m rl.tiny.shipped --rebuild  # build them afresh first (minutes each), then ship

rl/tiny/shipped/<name>/ holds the files rl/tiny/build.py wrote for model `name` (config, model.safetensors, tokenizer,
tiny_spec.json with its pretraining losses), and rl/tiny/shipped/MANIFEST.json records, per model, its spec key, the
*builder fingerprint* and the sha256 of every file. `build_tiny_model` installs a shipped copy into the cache instead
of building only when all three agree with the code at hand:

- the spec key (rl/tiny/build.py TinySpec.key(): sizes, corpus settings, steps, learning rate, seed);
- the builder fingerprint: the hash of the code that determines the weights (build_tokenizer, build_model, pretrain,
  world_corpus, the special tokens and chat template) and of the pretraining documents themselves (so a change in
  rl/tiny/corpus.py, code_corpus.py or data/tasks.py that alters the corpus counts, and one that does not, does not);
- every file's sha256 (a damaged or edited file is never loaded).

Otherwise the model is built as before, and tests/stages/test_shipped_models.py fails until the copies are re-shipped.
Pretraining runs on one torch thread (rl/tiny/build.py `pretrain`), so a rebuild with the same library versions gives
the same weights as the shipped copies (checked on 2026-12-06: two 1-thread builds of `tiny`, in different processes
and callers, were byte-identical); other torch versions or CPUs may still move the last bits.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "shipped"
NAMES = ("tiny", "tiny-student", "tiny-code", "tiny-tools")  # the pretrained ones (the -init models take seconds to make)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def builder_fingerprint(spec) -> str:
    """sha256 (16 hex digits) of the weight-determining builder code and of `spec`'s pretraining documents."""
    from rl.tiny import build
    h = hashlib.sha256()
    later = spec.world in build.LATER_WORLDS  # the first worlds' fingerprints stay what they were
    for fn in (build.build_tokenizer, build.build_model, build.pretrain, build._pretrain, build.world_corpus) + (
            (build.pretraining_corpus, build.world_tokenizer, build.LATER_WORLDS[spec.world][0]) if later else ()):
        h.update(inspect.getsource(fn).encode())
    h.update(json.dumps([build.SPECIAL, build.TAGS, build.CHAT_TEMPLATE]).encode())
    if later:
        h.update(json.dumps(build.LATER_WORLDS[spec.world][1]).encode())
    h.update(json.dumps(build.pretraining_corpus(spec)).encode())
    return h.hexdigest()[:16]


def read_manifest(root: Path = SHIPPED) -> dict:
    path = root / "MANIFEST.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def find_shipped(spec, root: Path = SHIPPED) -> tuple[Path | None, str]:
    """(the shipped directory of `spec`, "") when its key, builder fingerprint and file hashes all check, else
    (None, why not) in a few words."""
    entry = next((e for e in read_manifest(root).values() if e.get("key") == spec.key()), None)
    if entry is None:
        return None, f"no shipped copy of spec {spec.key()}"
    src = root / entry["dir"]
    current = builder_fingerprint(spec)
    if entry.get("builder") != current:
        return None, (f"the shipped {entry['dir']} was made by another builder ({entry.get('builder')} vs {current}): "
                      f"re-ship with python -m rl.tiny.shipped")
    for name, digest in entry["files"].items():
        if not (src / name).is_file() or sha256_file(src / name) != digest:
            return None, f"shipped file {src / name} is missing or does not match its sha256"
    return src, ""


def install_shipped(spec, out: Path, root: Path = SHIPPED) -> tuple[Path | None, str]:
    """Copy the checked shipped model of `spec` into the cache directory `out` (atomically, as a build would
    publish it); (out, "") or (None, why not)."""
    src, why = find_shipped(spec, root)
    if src is None:
        return None, why
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    from rl.train.rundir import share_file_modes
    share_file_modes(tmp)
    try:
        os.replace(tmp, out)
    except OSError:  # another process published it first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return out, ""


def ship(names=NAMES, rebuild: bool = False, root: Path = SHIPPED) -> dict:
    """Copy each model's cached build (built first when missing, or afresh with `rebuild`) into root/<name>/ and
    write MANIFEST.json. The cache entry is trusted to come from the current builder: use `rebuild` after a change."""
    from rl.tiny.build import NAMED_SPECS, build_tiny_model
    manifest = read_manifest(root)
    for name in names:
        spec = NAMED_SPECS[name]
        built = build_tiny_model(spec, force=rebuild)
        dst = root / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(built, dst)
        manifest[name] = {"dir": name, "key": spec.key(), "builder": builder_fingerprint(spec),
                          "files": {f.name: sha256_file(f) for f in sorted(dst.iterdir()) if f.is_file()}}
        print(f"[shipped] {name}: {dst} ({sum(f.stat().st_size for f in dst.iterdir()) / 1e6:.1f} MB)", flush=True)
    (root / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Ship the tiny pretrained models (rl/tiny/shipped/).")
    ap.add_argument("--rebuild", action="store_true", help="build afresh instead of copying the cached builds")
    ap.add_argument("names", nargs="*", default=list(NAMES))
    a = ap.parse_args()
    ship(a.names, a.rebuild)
