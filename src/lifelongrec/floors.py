"""Did a run learn? Each task of a finished run against the floor any model must clear (issue 16, item 6).

A metric on its own does not say whether a model learned: an MRR@5 of 0.02 is good where the most
popular items score 0.005 and nothing where they score 0.02. So, on the run's own test examples:

- item tasks (next_item, item_rec): every test target is ranked by the run's model, rebuilt from the
  run's artifacts exactly as the run evaluated it (full ranking over the catalogue, the task's
  exclude_seen), and by the most popular items (its count among the task's training targets,
  `references.most_popular_ranks`). Reported: both MRR@5, the mean paired difference of reciprocal
  rank@5 with a 95% bootstrap interval over test examples, and a one-sided paired t-test of "the model
  ranks the target higher". Pairing both rankers on the same examples is what gives the test its
  power: their two unpaired intervals overlap long after the paired difference is clear.
- profile tasks (classify): the run's test accuracy against answering everyone the training split's
  majority class, with the exact McNemar test the run recorded (users the model gets right and the
  majority wrong, against the reverse; `significance.mcnemar_greater`).

A task counts as learned where p < 0.05; the p-values are per task, not corrected for their number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np
import torch
from scipy import stats

from .config import StreamConfig
from .data.stream import TEST, Stream
from .heads import ItemHead
from .metrics import ranks_full
from .significance import mcnemar_greater

ALPHA = 0.05


def test_ranks(run: Path, task: str, stream: Stream) -> tuple[np.ndarray, np.ndarray]:
    """The rank of each test target as the run ranks it, and the test examples as (user, end, target)
    rows in the same order."""
    from .objectives import objective_for
    from .predict import Predictor

    cfg = _config(run)
    p = Predictor(run)
    net, meta = p.model(task), p.config(task)
    train = cfg.train_for(int(meta["index"]), task)
    obj = objective_for(stream, task, net, cfg.model_copy(update={"train": train}))
    es, head = obj.eval_sets[TEST], cast(ItemHead, net.head)
    ranks = []
    with torch.no_grad():
        for s in range(0, len(es.windows), 1024):
            sl = slice(s, s + 1024)
            u = obj.user_vectors_dedup(es.windows[sl], es.users[sl], es.ends[sl])
            seen = obj.seen(es.users[sl], es.ends[sl]) if train.exclude_seen else None
            ranks.append(ranks_full(u, head.items, torch.from_numpy(es.targets[sl]), bias=head.bias, exclude=seen))
    rows = np.stack([es.users, es.ends, es.targets], axis=1).astype(np.int64)
    return torch.cat(ranks).numpy(), rows


def reciprocal_rank_at(ranks: np.ndarray, k: int = 5) -> np.ndarray:
    return np.where(ranks <= k, 1.0 / ranks, 0.0)


def item_floor(run: Path, task: str, stream: Stream, resamples: int = 2000) -> dict:
    """The run's model against the most popular items on the task's test examples (see the module)."""
    from .references import most_popular_ranks

    model, rows = test_ranks(run, task, stream)
    cfg = _config(run)
    index = next(i for i, t in enumerate(cfg.tasks) if t.name == task)
    train = cfg.train_for(index, task)
    popular = most_popular_ranks(stream, task, train, cfg.input_length(train))
    td = stream.task(task)
    te = td.split == TEST
    pop_rows = np.stack([td.user[te], td.end[te], td.target[te]], axis=1).astype(np.int64)
    # Both sides list the same examples in different orders: pair them by (user, end, target).
    a, b = np.lexsort(rows.T[::-1]), np.lexsort(pop_rows.T[::-1])
    if not np.array_equal(rows[a], pop_rows[b]):
        raise RuntimeError(f"{run} {task}: the run's test examples are not the stream's")  # a bug, not bad input
    m, p = reciprocal_rank_at(model[a].astype(float)), reciprocal_rank_at(popular[b].astype(float))
    diff = m - p
    rng = np.random.default_rng(0)
    boot = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(resamples)])
    pvalue = float(stats.ttest_rel(m, p, alternative="greater").pvalue) if len(diff) > 1 and diff.any() else 1.0
    return {
        "task": task,
        "kind": td.kind,
        "examples": len(diff),
        "floor": "most popular items",
        "metric": "MRR@5",
        "model": float(m.mean()),
        "reference": float(p.mean()),
        "difference": float(diff.mean()),
        "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        "test": "paired t-test, one-sided",
        "p": pvalue,
    }


def profile_floor(task: str, kind: str, test: dict) -> dict | None:
    """The run's test accuracy against the majority class, from the McNemar counts the run recorded."""
    if "wins_vs_majority" not in test or "losses_vs_majority" not in test or "accuracy" not in test:
        return None  # a run from before the counts were recorded
    wins, losses = int(test["wins_vs_majority"]), int(test["losses_vs_majority"])
    n = int(test.get("examples", 0))
    return {
        "task": task,
        "kind": kind,
        "examples": n,
        "floor": "majority class",
        "metric": "accuracy",
        "model": float(test["accuracy"]),
        "reference": float(test["accuracy"]) - (wins - losses) / n if n else float("nan"),
        "difference": (wins - losses) / n if n else float("nan"),
        "wins": wins,
        "losses": losses,
        "test": "exact McNemar, one-sided",
        "p": mcnemar_greater(wins, losses),
    }


def floors(run: Path, stream: Stream) -> list[dict]:
    """Every learned task of a finished run against its floor, in the run's order."""
    from .report import read_run

    r = read_run(run)
    rows = []
    for task in r["summary"]["tasks"]:
        kind = stream.task(task).kind
        if kind in ("next_item", "item_rec"):
            rows.append(item_floor(run, task, stream))
        elif kind == "classify":
            row = profile_floor(task, kind, r["final_test"].get(task, {}))
            if row is not None:
                rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    lines = [
        "| task | test examples | floor | model | floor's | difference | p (one-sided) | learned? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = f"{r['difference']:+.4f}"
        if "ci95" in r:
            diff += f" [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]"
        lines.append(
            f"| {r['task']} | {r['examples']:,} | {r['floor']} ({r['metric']}) | {r['model']:.4f} | "
            f"{r['reference']:.4f} | {diff} | {r['p']:.2g} | {'yes' if r['p'] < ALPHA else 'no'} |"
        )
    lines.append(
        "\nItem tasks: paired t-test of the model's reciprocal rank@5 against the most popular items' on the "
        "same test examples, 95% bootstrap interval; profile tasks: exact McNemar test against answering "
        f"the majority class. Learned: p < {ALPHA}, per task, uncorrected."
    )
    return "\n".join(lines)


def _config(run: Path) -> StreamConfig:
    return StreamConfig.model_validate(json.loads((run / "config.json").read_text(encoding="utf-8")))


def floors_report(run: Path, out: Path, stream: Stream | None = None) -> str:
    """The floors of a finished run as text, also written to out/floors.md and out/floors.json."""
    from .fsutil import write_json_atomic, write_text_atomic

    if stream is None:
        from .data.prepare import open_stream

        stream, _ = open_stream(_config(run))
    rows = floors(run, stream)
    text = f"Against the floor (did {run} learn each task?):\n\n" + render(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "floors.json", rows)
    write_text_atomic(out / "floors.md", text + "\n")
    return text
