#!/usr/bin/env bash
# The GPU table in one command, for a lent GPU (about 8 minutes on one H100):
#   1. captioning, grounding and VQA at batch 1 and 64, ours in fp16 and bf16, against
#      mmpretrain 1.2.0 on the same GPU (as shipped, and with its KV cache revived for
#      captioning and grounding): `benchmarks/speed.py --side-by-side --device cuda`;
#   2. text-to-image: OFA-base drawing 24 samples of 1024 codes in fp16 and bf16, and the
#      VQGAN decoding them: `benchmarks/imagine_speed.py --device cuda`.
# Tables go to stdout and to $OUT/gpu.md (or ./gpu.md).
#
#   bash benchmarks/gpu.sh                 # on the GPU machine, from the repository root
#   DEVICE=cpu SMOKE=1 bash benchmarks/gpu.sh   # the same steps, small, on this CPU (a test)
#
# What the GPU machine needs beside the repository (it reaches no network):
#   - shared/oracle and shared/bpe: copies of ../shared/oracle and ../shared/bpe (SHARED=...);
#   - our dependencies and mmpretrain's, as wheels in .whl/ (WHEELS=...), installed here into
#     /tmp/ofa-site and /tmp/mm-site with pip --target; the machine's python3 holds torch.
# On this machine (DEVICE=cpu) the oracle's venvs from ../shared/oracle/setup.sh are used.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
SHARED=${SHARED:-$( [ -d shared/oracle ] && echo shared || echo ../shared )}
OUT_MD=${OUT:-.}/gpu.md
PY=${PYTHON:-python3}
ENV_DIR=${OFA_ORACLE_SCRATCH:-/tmp/ofa-oracle-env}
MM_ARGS=()
if [ "$DEVICE" != cpu ]; then
  WHEELS=${WHEELS:-.whl}
  if [ -d "$WHEELS/ofa" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/ofa-site "$WHEELS"/ofa/*.whl
    export PYTHONPATH=/tmp/ofa-site:${PYTHONPATH:-}
  fi
  if [ -d "$WHEELS/mmpretrain" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/mm-site "$WHEELS"/mmpretrain/*.whl
    printf '#!/bin/sh\nPYTHONPATH=/tmp/mm-site exec %s "$@"\n' "$(command -v "$PY")" > /tmp/mm-python
    chmod +x /tmp/mm-python
    MM_ARGS=(--mm-python /tmp/mm-python)
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
  PY=${PYTHON:-.venv/bin/python}
fi
export PYTHONPATH=src:${PYTHONPATH:-}
if [ "${SMOKE:-0}" = 1 ]; then
  BATCHES=1,2 REPEATS=1 SAMPLES=2 STEPS=16 VQ=2 TASKS=caption,ground
else
  BATCHES=1,64 REPEATS=3 SAMPLES=24 STEPS=1024 VQ=24 TASKS=caption,ground,vqa
fi
DTYPES=${DTYPES:-$( [ "$DEVICE" = cpu ] && echo float32,bfloat16 || echo float16,bfloat16 )}
rm -f "$OUT_MD"
"$PY" benchmarks/speed.py --side-by-side --device "$DEVICE" --shared "$SHARED" \
    --env "$ENV_DIR" --skip-setup --tasks "$TASKS" --batches "$BATCHES" --dtypes "$DTYPES" \
    --references mmpretrain,mmpretrain-cached --repeats "$REPEATS" "${MM_ARGS[@]}" \
    --write "$OUT_MD"
"$PY" benchmarks/imagine_speed.py --device "$DEVICE" --dtypes "$DTYPES" --samples "$SAMPLES" \
    --steps "$STEPS" --vqgan-images "$VQ" | tee -a "$OUT_MD"
