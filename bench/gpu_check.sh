#!/usr/bin/env bash
# Issue 20's GPU figures in one script, for a session that is lent a GPU machine (the `run` tool).
# Nothing outside that machine can be reached, so carry the ML-1M files: here, once,
#     mkdir -p bench/_work/gpu_cache/datasets && cp -r ~/.cache/lifelongrec/datasets/ml-1m bench/_work/gpu_cache/datasets/
# then: run(command="bash bench/gpu_check.sh", carry=["bench/_work/gpu_cache"], timeout_s=540)
# It writes JSON lines to $OUT (the run tool's output folder; default runs/gpu): T1 tokens/s and the fraction
# of the GPU's own measured GEMM peak (bench/t1_speed.py) for NextItNet and SASRec on ML-1M, float32
# and bf16, at d = 64 and at the paper's d = 256 with 6 x {1,2,4,8}; then, with time left, the same on
# the 100M-row synthetic stream (generated there: about 2.5 min, then prepared: about 1 min).
set -euo pipefail
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export LIFELONGREC_CACHE=${LIFELONGREC_CACHE:-$PWD/bench/_work/gpu_cache}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA in this torch'; print(torch.__version__)"
pip install -q --no-deps -e . 2>/dev/null || pip install -q -e .
paper="model.dilations=[1,2,4,8,1,2,4,8,1,2,4,8,1,2,4,8,1,2,4,8,1,2,4,8]"
for prec in fp32 bf16; do
  python bench/t1_speed.py --config ml1m_paper --epochs 2 --set train.device=cuda --set train.precision=$prec \
    | tee -a "$OUT/t1_ml1m.jsonl"
  python bench/t1_speed.py --config ml1m_paper --backbones nextitnet --epochs 2 --set train.device=cuda \
    --set train.precision=$prec --set model.d=256 --set "$paper" | tee -a "$OUT/t1_ml1m_d256.jsonl"
done
if [ "${WITH_QK:-0}" = 1 ]; then
  python bench/make_qk_video.py --users 3600000 --out bench/_work/qk_video_100m.csv
  lifelongrec data prepare --config bench/configs/qk_video_synthetic.yaml
  python bench/t1_speed.py --config bench/configs/qk_video_synthetic.yaml --backbones nextitnet --epochs 1 \
    --set train.device=cuda --set train.precision=bf16 | tee -a "$OUT/t1_qk.jsonl"
fi
