"""The tabular experiment as a table (markdown): the new task's test AUC per method over seeds, what
it trained and cost, whether the old tasks kept their scores; and scikit-learn references computed
independently on the same split (logistic regression on one-hot fields, gradient boosting)."""

from __future__ import annotations

import numpy as np

from ..significance import paired_t_test
from .data import TEST, TRAIN, VALID, TabularData


def references(data: TabularData, tasks: list[str], seed: int = 0) -> dict[str, dict[str, float]]:
    """{reference: {task: test AUC}}; C of the logistic regression chosen on validation."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder
    from threadpoolctl import threadpool_limits

    from ..metrics import auc

    tr, va, te = (data.rows(s) for s in (TRAIN, VALID, TEST))
    onehot = OneHotEncoder(handle_unknown="ignore").fit(data.fields[tr])
    x = onehot.transform(data.fields)
    out: dict[str, dict[str, float]] = {"logistic_regression": {}, "gradient_boosting": {}}
    for t in tasks:
        y = data.labels[t]
        best = None
        for c in (0.01, 0.1, 1.0, 10.0):
            with threadpool_limits(limits=1, user_api="blas"):
                m = LogisticRegression(C=c, max_iter=2000).fit(x[tr], y[tr])
            v = auc(m.decision_function(x[va]), y[va])
            if best is None or v > best[0]:
                best = (v, m)
        assert best is not None
        out["logistic_regression"][t] = auc(best[1].decision_function(x[te]), y[te])
        cats = [k for k, c in enumerate(data.cardinalities) if c <= 255]  # its limit for a categorical feature
        gb = HistGradientBoostingClassifier(categorical_features=cats or None, random_state=seed)
        gb.fit(data.fields[tr], y[tr])
        out["gradient_boosting"][t] = auc(gb.predict_proba(data.fields[te])[:, 1], y[te])
    return out


def _ms(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.4f} ± {a.std(ddof=1):.4f}" if len(a) > 1 else f"{a.mean():.4f}"


def render(result: dict, refs: dict[str, dict[str, float]], new_task: str, old_tasks: list[str]) -> str:
    seeds = list(result["seeds"].values())
    full = [s["full_retraining"][new_task] for s in seeds if "full_retraining" in s]
    full_params = full[0]["parameters"] if full else None
    lines = [
        f"New task `{new_task}`: test AUC over {len(seeds)} seed(s), mean ± std; trainable parameters of the "
        "new task and their share of full retraining (all tasks, embeddings included); FLOPs of one training "
        "step (forward + backward, one batch); seconds of training the new task.",
        "",
        "| method | AUC | vs full retraining (p) | trainable | % of full | FLOPs / step | seconds | old tasks kept |",
        "|---|---|---|---|---|---|---|---|",
    ]
    full_auc = [r["test"][new_task] for r in full]
    for name in seeds[0]:
        rows = [s[name][new_task] for s in seeds]
        share = f"{100 * rows[0]['trainable_parameters'] / full_params:.1f}%" if full_params else "-"
        kept = [r.get("old_tasks_unchanged") for r in rows]
        unchanged = "-" if kept[0] is None else ("yes, every seed" if all(kept) else f"NO ({kept.count(False)})")
        aucs = [r["test"][new_task] for r in rows]
        versus = "-"
        if name != "full_retraining" and len(full_auc) == len(aucs) > 1:
            t = paired_t_test(aucs, full_auc)
            versus = f"{t['mean_difference']:+.4f} (p={t['p']:.2g})"
        lines.append(
            f"| {name} | {_ms(aucs)} | {versus} | {rows[0]['trainable_parameters']:,} | {share} | "
            f"{rows[0]['flops_per_step']:,} | {_ms([r['train_seconds'] for r in rows])} | {unchanged} |"
        )
    for ref, by_task in refs.items():
        lines.append(f"| *{ref}* (reference) | {by_task[new_task]:.4f} | - | - | - | - | - | - |")
    lines += [
        "",
        "(p: two-sided paired t-test over seeds against full retraining, no correction for multiple "
        "comparisons; seconds are wall-clock training time on a shared machine, compare them as ratios.)",
    ]
    lines += ["", "Stage 1 (the pre-training tasks, learned jointly), test AUC:", ""]
    lines.append("| model | " + " | ".join(old_tasks) + " |")
    lines.append("|---" * (len(old_tasks) + 1) + "|")
    for name in seeds[0]:
        if "stage1" in seeds[0][name]:
            cells = [_ms([s[name]["stage1"]["test"][t] for s in seeds]) for t in old_tasks]
            lines.append(f"| {name.rstrip('*')} | " + " | ".join(cells) + " |")
    if full:
        cells = [_ms([r["test"][t] for r in full]) for t in old_tasks]
        lines.append("| full_retraining (all tasks) | " + " | ".join(cells) + " |")
    for ref, by_task in refs.items():
        lines.append(f"| *{ref}* | " + " | ".join(f"{by_task[t]:.4f}" for t in old_tasks) + " |")
    return "\n".join(lines)
