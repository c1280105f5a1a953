#!/usr/bin/env bash
# A GPU burst in one command (a lent machine gives 10 minutes a call): the speed table on the device in fp32
# and bf16, then cdt-tiny trained from gpu_inputs/ (made here by `scripts/gpu_burst.py prepare`) for the
# remaining minutes. Everything lands in OUT: speed.txt, train.txt, weights.safetensors, log.jsonl,
# summary.json.
#
#   bash scripts/gpu_burst.sh OUT [TRAIN_MINUTES]
#
# Knobs for a dry run on the CPU (tests/test_gpu_burst.py): BURST_PRESETS, BURST_SIZES, BURST_FRAMES, BURST_DTYPES,
# BURST_SPEED_SECONDS, BURST_INPUTS, BURST_TRAIN_ARGS, PYTHON.
set -euo pipefail
OUT=${1:?usage: gpu_burst.sh OUT [TRAIN_MINUTES]}
MINUTES=${2:-6}
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
DEVICE=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  $PY -c "import torch; print('torch', torch.__version__)"; } | tee "$OUT/speed.txt"

# The speed rows are bounded so that they can never eat the training time; each row times every precision.
timeout "${BURST_SPEED_SECONDS:-140}" $PY benchmarks/speed.py --device "$DEVICE" --precisions ${BURST_DTYPES:-fp32 bf16} \
  --presets ${BURST_PRESETS:-cdt-tiny cdt-small cdt-base} --sizes ${BURST_SIZES:-256 720x1280} \
  --frames "${BURST_FRAMES:-17}" --repeats 2 2>&1 | tee -a "$OUT/speed.txt" \
  || echo "speed.py stopped: exit ${PIPESTATUS[0]}" | tee -a "$OUT/speed.txt"

$PY scripts/gpu_burst.py train --inputs "${BURST_INPUTS:-gpu_inputs}" --out "$OUT" --minutes "$MINUTES" \
  ${BURST_TRAIN_ARGS:-} 2>&1 | tee "$OUT/train.txt"
