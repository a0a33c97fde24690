"""Checkpoints are atomic: a crash mid-save leaves the last good checkpoint intact and is never picked for resume."""
import pytest
import torch
from accelerate import Accelerator

from rl.train import checkpoint as ckpt
from rl.train.models import load_causal_lm, load_tokenizer


def prepared(model_dir):
    acc = Accelerator(cpu=True)
    model = load_causal_lm(str(model_dir))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    model, opt = acc.prepare(model, opt)
    return acc, model, opt, sched


@pytest.fixture
def parts(micro_model_dir):
    acc, model, opt, sched = prepared(micro_model_dir)
    return acc, model, load_tokenizer(str(micro_model_dir)), opt, sched


def test_crash_mid_save_keeps_last_good_checkpoint(parts, tmp_path, monkeypatch):
    acc, model, tok, opt, sched = parts
    good = ckpt.save_checkpoint(acc, tmp_path, 2, model, tok, sched, {"sampler_position": 16})
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # training went on

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(acc, tmp_path, 4, model, tok, sched, {"sampler_position": 32})
    monkeypatch.undo()

    assert ckpt.latest_checkpoint(tmp_path) == good
    assert not (tmp_path / "checkpoint-4").exists()
    fresh = load_causal_lm(str(good))  # the good checkpoint still loads, with the weights saved at step 2
    torch.testing.assert_close(next(fresh.parameters()) + 1.0, next(model.parameters()))


def test_resume_restores_weights_optimizer_schedule_rng_and_position(parts, micro_model_dir, tmp_path):
    acc, model, tok, opt, sched = parts
    model(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([[5, 6, 7]])).loss.backward()
    opt.step()
    sched.step()
    torch.manual_seed(123)
    path = ckpt.save_checkpoint(acc, tmp_path, 7, model, tok, sched, {"sampler_position": 56})
    expected_draw = torch.rand(3)
    want = {k: v.clone() for k, v in model.state_dict().items()}
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()  # a Hugging Face model too

    acc2, other, opt2, sched2 = prepared(micro_model_dir)
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    state = ckpt.load_training_state(acc2, path, sched2)
    assert state == {"step": 7, "sampler_position": 56}
    for k, v in other.state_dict().items():
        torch.testing.assert_close(v, want[k])
    assert opt2.state_dict()["state"][0]["step"].item() == 1  # Adam moments came back
    assert sched2.get_last_lr() == sched.get_last_lr() == [5e-4]  # the schedule continues at its step (1e-3 / 2)
    assert torch.equal(torch.rand(3), expected_draw)  # RNG continues where the saved run was


def test_total_limit_prunes_oldest(parts, tmp_path):
    acc, model, tok, opt, sched = parts
    for step in (1, 2, 3):
        ckpt.save_checkpoint(acc, tmp_path, step, model, tok, sched, {"sampler_position": 0}, total_limit=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]


# issue 25 item 1: unpadded names sorted as strings put checkpoint-12 before checkpoint-9 (and checkpoint-10 before
# checkpoint-8), so the pruning after a save removed the checkpoint it had just written. By step number:
@pytest.mark.parametrize("steps, limit, kept", [
    ((3, 6, 9, 12), 2, [9, 12]),       # the run (save_every=3, max_steps=12); by name it left 6 and 9
    ((8, 9, 10, 12), 2, [10, 12]),     # by name: after 10, "checkpoint-10" < "checkpoint-8" and 10 went
    ((9, 10, 12), 1, [12]),            # by name: 9 survived both saves
    ((98, 99, 100, 101), 3, [99, 100, 101]),
])
def test_total_limit_prunes_by_step_number_across_a_power_of_ten(parts, tmp_path, steps, limit, kept):
    acc, model, tok, opt, sched = parts
    for step in steps:
        ckpt.save_checkpoint(acc, tmp_path, step, model, tok, sched, {"sampler_position": 0}, total_limit=limit)
    assert sorted(int(p.name.split("-")[1]) for p in tmp_path.iterdir()) == kept


def test_every_chooser_takes_the_newest_checkpoint_after_pruning(parts, tmp_path):
    """resume `auto`, export's run directory, resolve_model_path (SFT's base, the pipeline's stages, evaluation) and
    latest_checkpoint itself (the pipeline's stage results) all pick checkpoint-12 of 3, 6, 9, 12 with limit 2."""
    from types import SimpleNamespace

    from rl.export import find_checkpoint
    from rl.grpo import resume_point
    from rl.train.models import resolve_model_path
    acc, model, tok, opt, sched = parts
    for step in (3, 6, 9, 12):
        ckpt.save_checkpoint(acc, tmp_path, step, model, tok, sched, {"sampler_position": step}, total_limit=2)
    newest = tmp_path / "checkpoint-12"
    assert ckpt.latest_checkpoint(tmp_path) == newest
    assert resume_point(SimpleNamespace(overwrite=False, resume="auto", output_dir=str(tmp_path))) == newest
    assert find_checkpoint(tmp_path) == newest
    assert resolve_model_path(str(tmp_path)) == str(newest)
    assert ckpt.checkpoints_by_step(tmp_path) == [tmp_path / "checkpoint-9", newest]


def test_one_naming_scheme_with_the_hf_trainer(tmp_path):
    """GRPO's checkpoint-N is SFT's (the HF Trainer's PREFIX_CHECKPOINT_DIR-N); the latest is by step number, not by
    name (checkpoint-10 after checkpoint-9), and earlier zero-padded names still count."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
    assert ckpt.checkpoint_dir(tmp_path, 96).name == f"{PREFIX_CHECKPOINT_DIR}-96" == "checkpoint-96"
    for name in ("checkpoint-9", "checkpoint-10", "checkpoint-000008"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text("{}")
    assert ckpt.latest_checkpoint(tmp_path).name == "checkpoint-10"
    assert [p.name for p in ckpt.checkpoints_by_step(tmp_path)] == ["checkpoint-000008", "checkpoint-9", "checkpoint-10"]
    assert get_last_checkpoint(str(tmp_path)).endswith("checkpoint-10")  # what SFT's resume picks


@pytest.mark.parametrize("message, shown", [
    ("Removed shared tensor {'lm_head.weight'} while saving. This should be OK, ...", False),  # tied head: expected
    ("[RANK 0] Removed shared tensor {'lm.lm_head.weight'} while saving.", False),  # GRPO's wrapper, distributed
    ("Removed shared tensor {'lm_head.weight', 'model.layers.0.mlp.up_proj.weight'} while saving.", True),
    ("Removed shared tensor {'model.embed_tokens.weight'} while saving.", True),
    ("some other accelerate warning", True),
])
def test_only_the_tied_head_notice_is_silenced(message, shown):
    import logging
    record = logging.LogRecord("accelerate.utils.other", logging.WARNING, __file__, 1, message, None, None)
    assert ckpt._TiedHeadNotice().filter(record) is shown


def test_a_tied_checkpoint_saves_without_the_notice(parts, tmp_path, caplog):
    acc, model, tok, opt, sched = parts
    assert acc.unwrap_model(model).config.tie_word_embeddings  # the micro model ties head and embeddings
    with caplog.at_level("WARNING"):
        ckpt.save_checkpoint(acc, tmp_path, 1, model, tok, sched, {"sampler_position": 0})
    assert not [r for r in caplog.records if "shared tensor" in r.getMessage()]
