"""Weights stream to the rollout worker through one fixed-size shared-memory bucket (rl/rollout/engines/weight_stream.py):
the layout of the docstring's worked example, a tensor larger than the bucket split across chunks, the wire dtype,
and a real worker that ends up with exactly the learner's weights while no chunk ever exceeds the bucket."""
import pytest
import torch

from rl.core.episode import SamplingParams
from rl.rollout.engines.weight_stream import BucketWriter, WeightBucket, copy_chunk
from rl.rollout.engines.worker import EngineSpec, RolloutWorker
from rl.train.models import load_causal_lm


def stream(tensors: dict, size: int, wire_dtype=None):
    """Push `tensors` through a bucket of `size` bytes into a staging dict; (staging, layouts, writer)."""
    bucket, staging, layouts = WeightBucket(size=size), {}, []

    def flush(layout):
        layouts.append(layout)
        copy_chunk(bucket, layout, staging)

    try:
        writer = BucketWriter(bucket, flush, wire_dtype)
        for name, t in tensors.items():
            writer.add(name, t)
        writer.finish()
    finally:
        bucket.close(unlink=True)
    return staging, layouts, writer


def test_worked_example_layout():
    """Bucket 256 B, float32 a [10], b [100], c [3] (hand-derived in the module docstring): a at 0 (40 B), b[0:48]
    at the aligned 64 (192 B, full); b[48:100] at 0 (208 B; the next aligned offset 256 leaves no room); c at 0."""
    tensors = {"a": torch.arange(10.0), "b": torch.arange(100.0) * -1, "c": torch.tensor([1.5, 2.5, 3.5])}
    staging, layouts, writer = stream(tensors, 256)
    assert layouts == [[("a", "float32", (10,), 0, 10, 0), ("b", "float32", (100,), 0, 48, 64)],
                       [("b", "float32", (100,), 48, 52, 0)],
                       [("c", "float32", (3,), 0, 3, 0)]]
    assert (writer.chunks, writer.peak, writer.bytes) == (3, 256, 452)  # 40 + 400 + 12 payload bytes
    for name, t in tensors.items():
        assert torch.equal(staging[name], t)


def test_tensor_larger_than_the_bucket_and_the_wire_dtype():
    """A [33, 64] float32 matrix (8,448 B) through a 1,024 B bucket in bfloat16 (2 B each: 4,224 B): 512 elements
    per chunk -> 5 chunks (4 x 512 + 64 elements), and the staged tensor is the bf16 rounding of the original."""
    w = torch.randn(33, 64, generator=torch.Generator().manual_seed(0))
    staging, layouts, writer = stream({"w": w}, 1024, torch.bfloat16)
    assert [[(e[3], e[4]) for e in chunk] for chunk in layouts] == [[(0, 512)], [(512, 512)], [(1024, 512)],
                                                                    [(1536, 512)], [(2048, 64)]]
    assert (writer.chunks, writer.peak, writer.bytes) == (5, 1024, 4224)
    assert staging["w"].dtype == torch.bfloat16 and torch.equal(staging["w"], w.to(torch.bfloat16))


def test_bucket_smaller_than_one_aligned_element_is_refused():
    with pytest.raises(ValueError, match="a push bucket of 4 bytes cannot hold one aligned element"):
        stream({"a": torch.zeros(2, dtype=torch.float64)}, 4)


def perturbed(micro_model_dir, seed=0):
    model = load_causal_lm(str(micro_model_dir))
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_worker_receives_exactly_the_learners_weights_through_a_small_bucket(micro_model_dir, dtype):
    """Through a 4 KiB bucket: every chunk <= 4,096 B, the embedding (300 x 32 floats, 38,400 B in fp32) split over
    several; the worker's engine holds the pushed weights exactly (bf16: the learner's fp32 rounded to bf16, the
    engine loaded in the recipe's dtype, not fp32)."""
    worker = RolloutWorker(EngineSpec(engine="hf", model_path=str(micro_model_dir), dtype=dtype,
                                      bucket_bytes=4096), timeout_s=120)
    try:
        before = worker.engine_weights()
        assert {t.dtype for t in before.values()} == {getattr(torch, dtype)}
        model = perturbed(micro_model_dir)
        learner = dict(model.named_parameters())
        worker.push_weights(1, model.named_parameters())
        after = worker.engine_weights()  # queued behind the push: applied by now
        assert sorted(after) == sorted(learner)
        for name, p in learner.items():
            assert torch.equal(after[name], p.detach().to(getattr(torch, dtype))), name
        esize = 4 if dtype == "float32" else 2
        payload = sum(p.numel() for p in learner.values()) * esize
        push = worker.last_push
        assert push["bytes"] == payload and push["peak_bytes"] == 4096  # a split tensor fills a chunk exactly
        assert push["chunks"] >= payload / 4096
        assert worker._bucket.size == 4096  # the only shared memory of the push
        second = perturbed(micro_model_dir, seed=1)
        worker.push_weights(2, second.named_parameters())  # the same bucket and staging tensors, refilled
        after = worker.engine_weights()
        assert worker._acked_version == 2
        assert all(torch.equal(after[n], p.detach().to(getattr(torch, dtype))) for n, p in second.named_parameters())
    finally:
        worker.close()


def test_a_worker_that_does_not_push_only_advances_its_version(micro_model_dir):
    """Server mode on ranks > 0 (`pushes=False`): the learner still consumes the weights (collective gathers under
    ZeRO-3/FSDP2), nothing reaches the engine, the worker reports the new version (rank 0's worker pushes)."""
    worker = RolloutWorker(EngineSpec(engine="hf", model_path=str(micro_model_dir), pushes=False), timeout_s=120)
    try:
        before = worker.engine_weights()
        consumed = []
        worker.push_weights(1, ((n, consumed.append(n) or p) for n, p in perturbed(micro_model_dir).named_parameters()))
        groups, version, _ = worker.result(worker.submit([[5, 6]], SamplingParams(n=1, max_tokens=2, seed=0)))
        assert version == 1 and len(consumed) == len(before)
        assert worker._bucket is None and worker.last_push == {}  # no shared memory at all
        assert all(torch.equal(before[n], t) for n, t in worker.engine_weights().items())
    finally:
        worker.close()


def test_the_worker_stages_pushes_in_host_memory_never_on_its_engines_device(micro_model_dir):
    """The engine on "meta" (a stand-in for the GPU this machine lacks: shapes, no storage), a push through a 4 KiB
    bucket: every chunk <= 4,096 B, the staged copy (the whole model in the engine's dtype: payload bytes) is host
    memory, and 0 bytes are staged on the engine's device (before: the whole model there, beside vLLM's pool or the
    transformers engine's own copy). The host tensors are then copied into the engine's parameters in place."""
    worker = RolloutWorker(EngineSpec(engine="hf", model_path=str(micro_model_dir), device="meta",
                                      bucket_bytes=4096), timeout_s=120)
    try:
        model = perturbed(micro_model_dir)
        worker.push_weights(1, model.named_parameters())
        worker._wait_for_version(1)  # applied: the meta parameters took the host tensors
        payload = sum(p.numel() for p in model.parameters()) * 4
        assert worker.staged_bytes() == {"cpu": payload}
        assert worker.last_push["peak_bytes"] == 4096 and worker.last_push["chunks"] >= payload / 4096
    finally:
        worker.close()
