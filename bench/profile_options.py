"""Do the profile tasks learn? The user-vector pooling and class-weight options against the majority
class and a bag-of-items logistic regression, on the same splits (issue 16, item 5).

Each variant learns the profile tasks after a pretrained T1 with one method (default FineSmax: the
frozen T1 encoder and a new head, the cleanest test of what the T1 representation carries):

    python bench/profile_options.py --init-from runs/ml1m/pretrain-nextitnet [--config ml1m]
        [--methods finesmax,stl] [--variants last,mean+log_loss] [--out runs/ml1m/profile-options]
        [--set train.threads=1]

Prints test accuracy per task and variant, the one-sided binomial p of "accuracy > majority share" on
the test users, and the reference rows; writes the same as JSON next to the runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _stream import complete
from scipy.stats import binomtest

from lifelongrec.config import load_config
from lifelongrec.data.prepare import open_stream
from lifelongrec.references import reference_rows
from lifelongrec.runner import run_stream

VARIANTS = {
    "last": ["train.pooling=last"],
    "mean": ["train.pooling=mean"],
    "last+balanced": ["train.pooling=last", "train.class_weight=balanced"],
    "mean+balanced": ["train.pooling=mean", "train.class_weight=balanced"],
    # early stopping on the validation cross-entropy: on a few hundred validation users the accuracy can
    # sit on the majority class for epochs while the loss still moves (`finetune.`: the tasks after T1
    # only, since T1 is an item task and watches MRR@k)
    "last+log_loss": ["train.pooling=last", "finetune.monitor=log_loss", "finetune.patience=5"],
    "mean+log_loss": ["train.pooling=mean", "finetune.monitor=log_loss", "finetune.patience=5"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--init-from", type=Path, required=True)
    ap.add_argument("--config", default="ml1m")
    ap.add_argument("--methods", default="finesmax")
    ap.add_argument("--variants", default="last,mean,last+balanced,mean+balanced", help=",".join(VARIANTS))
    ap.add_argument("--out", type=Path, default=Path("runs/ml1m/profile-options"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    base = load_config(args.config, args.overrides)
    profile = [t.name for t in base.tasks if t.kind == "classify"]
    order = [base.tasks[0].name, *profile]
    stream, _ = open_stream(base)
    refs = reference_rows(stream, base)
    result: dict = {
        "references": {
            k: {t: v[t]["accuracy"] for t in profile if t in v}
            for k, v in refs.items()
            if any(t in v for t in profile)  # item-task references (most popular, ridge) have no profile row
        }
    }
    for method in args.methods.split(","):
        for name in args.variants.split(","):
            sets = VARIANTS[name]
            out = args.out / f"{method}-{name}"
            cfg = load_config(args.config, [*args.overrides, *sets])
            t0 = time.perf_counter()
            if not complete(out):
                run_stream(cfg, method, out, order=order, resume=(out / "run.json").is_file(), init_from=args.init_from)
            rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            final = rows[-1]["test_after"]
            cells = {}
            for t in profile:
                maj = refs["majority"][t]
                n, acc = maj["examples"], final[t]["accuracy"]
                p = binomtest(round(acc * n), n, maj["accuracy"], alternative="greater").pvalue
                cells[t] = {"accuracy": acc, "p_vs_majority": float(p)}
            result[f"{method} {name}"] = {"tasks": cells, "seconds": round(time.perf_counter() - t0, 1)}
    print("| variant | " + " | ".join(profile) + " |")
    print("|---|" + "---|" * len(profile))
    for k, v in result.items():
        if k == "references":
            for ref, per in v.items():
                print(f"| *{ref}* | " + " | ".join(f"{per.get(t, float('nan')):.4f}" for t in profile) + " |")
            continue
        print(
            f"| {k} | "
            + " | ".join(f"{v['tasks'][t]['accuracy']:.4f} (p={v['tasks'][t]['p_vs_majority']:.2g})" for t in profile)
            + " |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile_options.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
