#!/bin/sh
# Conure's Table 3 on configs/ml1m_paper.yaml from the Fig. 2 seed-0 T1 (issue 16): report the finished
# and kept seeds without learning anything, and keep the finished ones in bench/ for later sessions.
# The learning call is the same without --no-learn (two processes, seeds 0-4 and 5-9, share the 2 cores).
set -eu
PY=${PY:-.venv/bin/python}
"$PY" bench/conure_transfer.py --init-from runs/bench/ml1m_paper/seed-0/T1 --config ml1m_paper \
  --seeds 0 1 2 3 4 5 6 7 8 9 --out runs/transfer_paper/default-split --set train.threads=1 \
  --set "method.prune_by_task={T1: 0.7, T2: 0.8, T3: 0.7}" --keep bench/conure_transfer_paper.json --no-learn
"$PY" bench/conure_transfer.py --init-from runs/bench/ml1m_paper/seed-0/T1 --config ml1m_paper \
  --seeds 0 1 2 3 4 --split 0.15 0.05 0.8 --out runs/transfer_paper/split-20-80 --set train.threads=1 \
  --set "method.prune_by_task={T1: 0.7, T2: 0.8, T3: 0.7}" --keep bench/conure_transfer_paper_split-20-80.json --no-learn
