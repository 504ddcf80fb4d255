#!/usr/bin/env bash
# Real T1 runs recorded in bench/RESULTS.md, one after another (2 cores: never in parallel):
#  1-2. ML-1M T1 on Conure's stream (split by user, last item held out), SASRec then NextItNet;
#  3.   SASRec on the standard protocol (ML-1M, all ratings, leave-one-out, full ranking).
# Each run writes its artifact and per-epoch metrics under runs/; rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/lifelongrec pretrain --config ml1m --backbone sasrec --out runs/ml1m/pretrain-sasrec
.venv/bin/lifelongrec pretrain --config ml1m_loo --out runs/ml1m_loo/pretrain-sasrec --set train.epochs=60
.venv/bin/lifelongrec pretrain --config ml1m --backbone nextitnet --out runs/ml1m/pretrain-nextitnet
