#!/usr/bin/env bash
# Real T1 runs recorded in bench/RESULTS.md, one after another (2 cores: never in parallel):
#  1. SASRec on the standard protocol (two recipes) (ML-1M, all ratings, leave-one-out, full ranking, seen items
#     excluded as in the published SASRec+ evaluation);
#  2-3. ML-1M T1 on Conure's stream (split by user, last item held out), SASRec and NextItNet.
# Each run writes its artifact and per-epoch metrics under runs/; rerunning resumes / skips.
set -euo pipefail
cd "$(dirname "$0")/.."
# 1a. the SASRec+ recipe (configs/ml1m_loo.yaml as it stands: original block, 0.02 init, random batches)
.venv/bin/lifelongrec pretrain --config ml1m_loo --out runs/ml1m_loo/sasrec-original --set train.threads=1
# 1c. the same recipe on SASRec/BERT4Rec's ML-1M: items with >= 5 ratings (3,416 items, 999,611 ratings),
#     the catalogue of the published SASRec+ number
.venv/bin/lifelongrec pretrain --config ml1m_loo --out runs/ml1m_loo/sasrec-5core --set sequence.min_item_count=5 \
  --set train.threads=2
# 1b. the earlier pre-norm SASRec with length-sorted batches and its 60-epoch, patience-5 budget
.venv/bin/lifelongrec pretrain --config ml1m_loo --out runs/ml1m_loo/pretrain-sasrec --set model.block=pre_ln \
  --set model.init_std=null --set train.length_buckets=64 --set train.epochs=60 --set train.patience=5
for b in sasrec nextitnet; do
  # d = 256 as recorded in RESULTS (the paper's width; configs/ml1m.yaml's default is 64 since then)
  .venv/bin/lifelongrec pretrain --config ml1m --backbone "$b" --out "runs/ml1m/pretrain-$b" --set model.d=256
done
