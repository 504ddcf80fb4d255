#!/usr/bin/env bash
# Real T1 runs recorded in bench/RESULTS.md, one after another (2 cores: never in parallel):
#  1. SASRec on the standard protocol (ML-1M, all ratings, leave-one-out, full ranking, seen items
#     excluded as in the published SASRec+ evaluation);
#  2-3. ML-1M T1 on Conure's stream (split by user, last item held out), SASRec and NextItNet.
# Each run writes its artifact and per-epoch metrics under runs/; rerunning resumes / skips.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/lifelongrec pretrain --config ml1m_loo --out runs/ml1m_loo/pretrain-sasrec --set train.epochs=40 \
  --set train.patience=5
for b in sasrec nextitnet; do
  # d = 256 as recorded in RESULTS (the paper's width; configs/ml1m.yaml's default is 64 since then)
  .venv/bin/lifelongrec pretrain --config ml1m --backbone "$b" --out "runs/ml1m/pretrain-$b" --set model.d=256
done
