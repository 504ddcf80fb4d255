#!/usr/bin/env bash
# A throwaway virtual environment with RecBole 1.2.1, for the side-by-side speed benchmark only.
# RecBole is never a dependency of lifelongrec. Pins from shared/RECBOLE.md: ray (pulled by RecBole)
# imports pkg_resources (gone in setuptools >= 81) and RecBole uses np.float_ (gone in numpy 2).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .recbole-venv
.recbole-venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 recbole==1.2.1
.recbole-venv/bin/pip install --quiet --disable-pip-version-check "numpy<2" "pandas<2.3" "setuptools<81" \
  "scipy<1.14" "scikit-learn<1.6"
.recbole-venv/bin/pip check
.recbole-venv/bin/python -c "import recbole; print('recbole', recbole.__version__)"
