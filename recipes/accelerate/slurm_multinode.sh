#!/bin/bash
# GRPO on 3 nodes: nodes 0-1 train (2 x 8 GPUs, ZeRO-3), node 2 serves rollouts with vLLM on its 8 GPUs:
# VLLM_DP engine replicas of VLLM_TP GPUs each (VLLM_DP x VLLM_TP = 8; default 8 x 1, data parallel: a 1.5B-7B model
# fits one GPU, and 8 replicas generate ~8x the tokens/s of one; use e.g. VLLM_TP=2 VLLM_DP=4 for a 32B model).
#   sbatch recipes/accelerate/slurm_multinode.sh configs/your_run.yaml
# The training config must say:  rollout: {engine: vllm, vllm_mode: server, vllm_server_url: http://<vllm node>:8000}
# (the vLLM node is the job's third node; this script prints its URL and exports it as VLLM_SERVER_URL).
#SBATCH --job-name=r1-grpo
#SBATCH --nodes=3
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --output=runs/slurm-%j.out
set -euo pipefail

CONFIG=${1:?usage: sbatch slurm_multinode.sh <train config.yaml>}
MODEL=${MODEL:?export MODEL=<HF model dir or hub id, on a shared filesystem>}
VLLM_TP=${VLLM_TP:-1}            # GPUs per engine replica (tensor parallel; 1 for models that fit one GPU)
VLLM_DP=${VLLM_DP:-$((8 / VLLM_TP))}  # engine replicas (data parallel): the server spreads the requests over them
(( VLLM_TP * VLLM_DP == 8 )) || { echo "VLLM_TP x VLLM_DP must be 8 (the GPUs of the vLLM node)"; exit 1; }
PORT=8000

NODES=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
LEARNERS=("${NODES[@]:0:2}")
VLLM_NODE=${NODES[2]}
MASTER_ADDR=${LEARNERS[0]}
export VLLM_SERVER_URL="http://${VLLM_NODE}:${PORT}"
echo "vLLM server: $VLLM_SERVER_URL (rollout.vllm_server_url)"
export NCCL_ASYNC_ERROR_HANDLING=1 NCCL_TIMEOUT=1800

# 1) the vLLM server (one command; equivalent to `trl vllm-serve` plus our worker extension, see docs/vllm.md)
srun --nodes=1 --ntasks=1 -w "$VLLM_NODE" --export=ALL,VLLM_SERVER_DEV_MODE=1 \
    python -m vllm.entrypoints.openai.api_server --model "$MODEL" --host 0.0.0.0 --port $PORT \
        --tensor-parallel-size "$VLLM_TP" --data-parallel-size "$VLLM_DP" --gpu-memory-utilization 0.9 --dtype bfloat16 \
        --logprobs-mode processed_logprobs --max-logprobs -1 \
        --weight-transfer-config '{"backend": "nccl"}' \
        --worker-extension-cls rl.rollout.engines.vllm_adapter.WorkerExtension &
SERVER_PID=$!

# 2) wait until it is healthy (the learner checks again, with a timeout)
for i in $(seq 1 180); do
    curl -sf "${VLLM_SERVER_URL}/health" >/dev/null && break
    sleep 5
done
curl -sf "${VLLM_SERVER_URL}/health" >/dev/null || { echo "vLLM server did not come up"; kill $SERVER_PID; exit 1; }

# 3) the learners, one accelerate launcher per node
srun --nodes=2 --ntasks=2 --ntasks-per-node=1 -w "$(IFS=,; echo "${LEARNERS[*]}")" bash -c "
    accelerate launch --config_file recipes/accelerate/multi_node.yaml \
        --num_machines 2 --num_processes 16 --machine_rank \$SLURM_PROCID \
        --main_process_ip $MASTER_ADDR --main_process_port 29500 \
        rl/grpo.py $CONFIG"
STATUS=$?
kill $SERVER_PID || true
exit $STATUS
