"""RecBole 1.2.1 side of the speed benchmark. Runs ONLY inside the throwaway .recbole-venv
(bench/setup_recbole.sh); RecBole is never a dependency of lifelongrec.

Trains one RecBole model on ML-1M leave-one-out (all ratings; valid = second-to-last item, test =
last; full ranking, RecBole's default of masking already-seen items), logging after every epoch the
wall-clock seconds since training started, the epoch's training seconds and the validation metrics,
as JSON lines, so the time to reach a validation NDCG@10 can be compared with lifelongrec's log.

Usage: .recbole-venv/bin/python bench/recbole_train.py --model SASRec --epochs 3 \
           --data-root ~/.cache/lifelongrec/datasets --out bench/_work/recbole_sasrec.jsonl [--anomaly on]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

SIZES = {
    # lifelongrec equivalents: configs/ml1m_loo.yaml with the overrides in bench/RESULTS.md
    "SASRec": {"hidden_size": 64, "n_layers": 2, "n_heads": 2, "inner_size": 256},
    "NextItNet": {"embedding_size": 64, "block_num": 5, "dilations": [1, 4], "kernel_size": 3},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=list(SIZES), required=True)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--data-root", required=True, help="folder holding <dataset>/<dataset>.inter")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--anomaly",
        choices=["on", "off"],
        default="off",
        help="RecBole 1.2.1 turns autograd anomaly detection on at import; 'off' undoes it",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = {
        "data_path": args.data_root,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50,
        "train_neg_sample_args": None,
        "loss_type": "CE",
        "epochs": args.epochs,
        "train_batch_size": 256,
        "eval_batch_size": 4096,
        "learning_rate": 0.001,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        "metrics": ["NDCG", "Hit"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "stopping_step": 1000,  # the epoch budget decides, not early stopping
        "show_progress": False,
        **SIZES[args.model],
    }
    t_prep = time.time()
    config = Config(model=args.model, dataset=args.dataset, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model_cls = get_model(config["model"])  # importing RecBole's models enables anomaly detection
    torch.autograd.set_detect_anomaly(args.anomaly == "on")
    model = model_cls(config, train_data.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    prep_s = time.time() - t_prep
    out = open(args.out, "w")  # noqa: SIM115 - written to from RecBole's epoch hooks below
    out.write(
        json.dumps(
            {
                "event": "start",
                "model": args.model,
                "prep_seconds": prep_s,
                "train_samples": len(train_data.dataset),
                "anomaly": args.anomaly,
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
        + "\n"
    )
    out.flush()
    t0 = time.time()
    marks = {"train_end": t0}
    orig_train, orig_valid = trainer._train_epoch, trainer._valid_epoch

    def train_epoch(*a, **k):
        s = time.time()
        r = orig_train(*a, **k)
        marks["train_seconds"] = time.time() - s
        marks["train_end"] = time.time()
        return r

    best = {"score": -1.0, "state": None}

    def valid_epoch(*a, **k):
        score, result = orig_valid(*a, **k)
        if score > best["score"]:  # kept in memory: RecBole's pickled checkpoints fail torch.load(weights_only)
            best["score"], best["state"] = score, copy.deepcopy(model.state_dict())
        out.write(
            json.dumps(
                {
                    "event": "epoch",
                    "elapsed_seconds": time.time() - t0,
                    "train_seconds": marks["train_seconds"],
                    "valid_seconds": time.time() - marks["train_end"],
                    "valid": {k2: float(v) for k2, v in result.items()},
                }
            )
            + "\n"
        )
        out.flush()
        return score, result

    trainer._train_epoch, trainer._valid_epoch = train_epoch, valid_epoch
    _, best_result = trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    model.load_state_dict(best["state"])
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    out.write(
        json.dumps(
            {
                "event": "end",
                "best_valid": {k: float(v) for k, v in best_result.items()},
                "test": {k: float(v) for k, v in test.items()},
                "elapsed_seconds": time.time() - t0,
            }
        )
        + "\n"
    )
    out.close()


if __name__ == "__main__":
    main()
