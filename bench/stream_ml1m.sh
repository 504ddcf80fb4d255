#!/usr/bin/env bash
# The ML-1M six-task stream with every method, each starting from the same pretrained T1 backbone
# (bench/t1_ml1m.sh writes it), then the Table-2 style report. One run at a time (2 cores).
# Usage: bash bench/stream_ml1m.sh [BACKBONE_ARTIFACT] [extra --set overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
ART=${1:-runs/ml1m/pretrain-nextitnet}
shift || true
for m in seqft finesmax peterrec stl sinmo mtl conure; do
  if [ -f "runs/ml1m/stream-$m/run.json" ]; then
    .venv/bin/lifelongrec stream run --resume "runs/ml1m/stream-$m"
  else
    .venv/bin/lifelongrec stream run --config ml1m --method "$m" --init-from "$ART" --out "runs/ml1m/stream-$m" "$@"
  fi
done
.venv/bin/lifelongrec report runs/ml1m/stream-* --out runs/ml1m/report
