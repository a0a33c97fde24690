"""The shipped tiny models (rl/tiny/shipped.py): current with the builder, hash-checked, installed instead of a build."""
import json
import shutil

import pytest

from rl.tiny.build import NAMED_SPECS, TinySpec, build_tiny_model
from rl.tiny.shipped import NAMES, SHIPPED, builder_fingerprint, find_shipped, read_manifest, sha256_file

MANIFEST = read_manifest()


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_shipped_copies_are_current(name):
    """Fails when the builder (its code or its corpus) or a TinySpec changed without re-shipping: run
    `python -m rl.tiny.shipped --rebuild` (the copies would otherwise be ignored and every clone would build)."""
    entry, spec = MANIFEST[name], NAMED_SPECS[name]
    assert entry["key"] == spec.key(), f"{name}: TinySpec changed; re-ship with python -m rl.tiny.shipped --rebuild"
    assert entry["builder"] == builder_fingerprint(spec), f"{name}: the builder changed; re-ship (--rebuild)"
    assert find_shipped(spec) == (SHIPPED / name, "")


def test_the_pretrained_models_are_shipped():
    assert set(MANIFEST) == set(NAMES) == {"tiny", "tiny-student", "tiny-code", "tiny-tools"}


def test_a_fresh_cache_gets_the_shipped_copy(tmp_path, capsys):
    out = build_tiny_model(NAMED_SPECS["tiny"], cache_dir=tmp_path)
    assert out == tmp_path / "tiny" / f"base-{NAMED_SPECS['tiny'].key()}"
    assert sha256_file(out / "model.safetensors") == MANIFEST["tiny"]["files"]["model.safetensors"]
    assert "the shipped copy (rl/tiny/shipped/, sha256 checked)" in capsys.readouterr().out


def test_a_changed_file_or_builder_is_never_used(tmp_path):
    root = tmp_path / "shipped"
    shutil.copytree(SHIPPED / "tiny", root / "tiny")
    manifest = {"tiny": dict(MANIFEST["tiny"])}
    (root / "MANIFEST.json").write_text(json.dumps(manifest))
    spec = NAMED_SPECS["tiny"]
    assert find_shipped(spec, root) == (root / "tiny", "")
    # another builder made it (its fingerprint is not the current one)
    (root / "MANIFEST.json").write_text(json.dumps({"tiny": {**manifest["tiny"], "builder": "0" * 16}}))
    path, why = find_shipped(spec, root)
    assert path is None and "made by another builder" in why and "python -m rl.tiny.shipped" in why
    # one byte of the weights changed
    (root / "MANIFEST.json").write_text(json.dumps(manifest))
    weights = root / "tiny" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert find_shipped(spec, root) == (None, f"shipped file {weights} is missing or does not match its sha256")
    # a spec nobody shipped (a test's micro model, a changed TinySpec)
    other = TinySpec(steps=7)
    assert find_shipped(other, root) == (None, f"no shipped copy of spec {other.key()}")


def test_a_forced_build_builds(tmp_path, capsys):
    """`force` (python -m rl.tiny.shipped --rebuild) pretrains afresh even where a copy is cached (it raised
    UnboundLocalError before any step)."""
    spec = TinySpec(num_docs=50, steps=2, batch_size=4, vocab_size=300)
    first = build_tiny_model(spec, cache_dir=tmp_path)
    again = build_tiny_model(spec, cache_dir=tmp_path, force=True)
    assert first == again and "a forced rebuild" in capsys.readouterr().out
    assert sha256_file(first / "model.safetensors") == sha256_file(again / "model.safetensors")  # 1 thread: the same
