#!/usr/bin/env bash
# The ML-1M six-task stream with every method, each starting from the same pretrained T1 backbone
# (lifelongrec pretrain --config ml1m writes it), then the Table-2 style report.
# Usage: [ROOT=runs/ml1m64] [METHODS="seqft ..."] bash bench/stream_ml1m.sh [BACKBONE_ARTIFACT] [--set ...]
# Finished runs are skipped, interrupted ones resumed, so the script can be rerun after a stop.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/ml1m64}
ART=${1:-$ROOT/pretrain-nextitnet}
shift || true
for m in ${METHODS:-seqft finesmax peterrec stl sinmo mtl conure}; do
  run="$ROOT/stream-$m"
  if grep -q '"status": "complete"' "$run/run.json" 2>/dev/null; then
    continue
  elif [ -f "$run/run.json" ]; then
    .venv/bin/lifelongrec stream run --resume "$run"
  else
    .venv/bin/lifelongrec stream run --config ml1m --method "$m" --init-from "$ART" --out "$run" "$@"
  fi
done
.venv/bin/lifelongrec report "$ROOT"/stream-* --out "$ROOT/report"
