#!/bin/sh
# Does PCL's profile-task collapse come from its prompt learning rate? PCL learns every task after T1 at
# method.lr (1e-2, the paper's Fig. 3 rate), overriding the profile tasks' own train.lr (1e-3 in
# configs/ml1m_paper.yaml). This learns T1,T4,T5,T6 with method.lr=0.001 from each seed's pretrained T1
# (runs/bench/ml1m_paper/seed-S/T1, waited for), and T1,T4 at the default 1e-2 for seed 0, to check that
# it equals the T4 of Fig. 2's Order2 (T1,T4,T5,T6,T2,T3: the same prefix) kept in
# bench/task_orders_pcl.json. Usage: sh bench/profile_pcl_lr.sh   (about 10 min a seed on one core)
set -eu
export ATEN_CPU_CAPABILITY="${ATEN_CPU_CAPABILITY:-avx2}" MKL_CBWR="${MKL_CBWR:-AVX2}" ONEDNN_MAX_CPU_ISA="${ONEDNN_MAX_CPU_ISA:-AVX2}"
PY=${PY:-.venv/bin/python}
mkdir -p logs
for S in 0 1 2; do
  while [ ! -f runs/bench/ml1m_paper/seed-$S/T1/backbone.json ]; do sleep 30; done
  "$PY" -m lifelongrec.cli stream run --config ml1m_paper --method pcl --order T1,T4,T5,T6 \
    --init-from runs/bench/ml1m_paper/seed-$S/T1 --out runs/profile_pcl/lr0.001-s$S \
    --set train.threads=1 --set method.lr=0.001 --set train.seed=$S > logs/profile_pcl_lr0.001_s$S.log 2>&1
done
"$PY" -m lifelongrec.cli stream run --config ml1m_paper --method pcl --order T1,T4 \
  --init-from runs/bench/ml1m_paper/seed-0/T1 --out runs/profile_pcl/lr0.01-s0-T4 \
  --set train.threads=1 --set train.seed=0 > logs/profile_pcl_lr0.01_s0.log 2>&1
