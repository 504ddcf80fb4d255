"""Reference rows for a comparison table: what the prepared stream alone predicts, with no neural model.

Each reference uses exactly the methods' splits (the stream's fixed train / valid / test labels) and
returns the objectives' own test metric dicts, protocol included, so it sits in the same table. A method
that does not beat them has not learned the task, however good its number looks on its own:

- `most_popular` (next_item, item_rec): every item is scored by how often it is a target of the task's
  training split. For next_item these are the targets NextItemObjective trains on: every position from
  the second of each training sequence (only the last `sequence.max_length` of them with
  `train.history=last`). Each test target is ranked among all items exactly as metrics.ranks_full
  ranks it: pessimistic on ties (1 + the other items whose count is >= the target's; counts tie often,
  so the rule matters), with `train.exclude_seen` honoured. This is the floor for any recommender.
- `majority` (classify, binary): everyone gets the most frequent training class. Its accuracy is that
  class's test share, and a constant score has AUC 0.5. This is the floor for any classifier.
- `bag_of_items_logreg` (classify, binary): scikit-learn's LogisticRegression on which items the user's
  input seq[:end] holds (a binary example x item CSR matrix, order ignored). C is chosen on the
  validation split; ties go to the smaller C. This is a linear model of "what the user watched", and a
  sequence encoder has to beat it to show that it adds something.
- `bag_of_items_ridge` (item_rec): ridge regression from the bag of the items the model reads (the last
  `input_length` of seq[:end]) plus a constant to the bag of the input's training targets, W =
  (X'X + lambda I)^-1 X'Y in closed form (an EASE-like item-to-item model across behaviours; the
  constant carries popularity), lambda chosen on the validation split, ranked with the same tie and
  exclude_seen rules. The item tasks' version of the logistic regression: a sequence encoder that does
  not beat it has not used what the input holds. Dense in the catalogue (n^2 floats, n^3 work), so it
  is skipped above RIDGE_MAX_ITEMS items.

Ranking always uses the whole catalogue ("full" / "full-exclude-seen"), even when a run asks for
`train.sampled_eval_negatives`. The training settings (ks, exclude_seen, history) of each task come
from `cfg.train_for(position of the task in cfg.tasks)`, as the runner reads them.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from .config import StreamConfig, TrainConfig
from .data.stream import TEST, TRAIN, VALID, Stream, TaskData
from .metrics import accuracy, auc, rank_metrics

C_GRID = (0.01, 0.1, 1.0, 10.0)
MAX_ITER = 5000  # lbfgs; enough to converge on every ML-1M profile task at every C of the grid
CHUNK = 8192  # distinct inputs per chunk when seen items are excluded (bounds the (input, item) pairs)
RIDGE_LAMBDAS = (1e2, 1e3, 1e4, 1e5, 1e6)
RIDGE_MAX_ITEMS = 20_000  # an n x n solve: 3.2 GB and minutes of one core at 20,000 items


def segments(stream: Stream, users: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) for every position lo[i] <= p < hi[i] of seq(users[i]), rows in example order."""
    lo = lo.astype(np.int64)
    n = np.maximum(hi.astype(np.int64) - lo, 0)
    rows = np.repeat(np.arange(len(users)), n)
    first = np.repeat(stream.offsets[users].astype(np.int64) + lo - (np.cumsum(n) - n), n)
    return rows, stream.seq_items[first + np.arange(int(n.sum()))].astype(np.int64)


def training_item_counts(stream: Stream, td: TaskData, train: TrainConfig, max_length: int) -> np.ndarray:
    """[n_items + 1] how often each item is a target of the task's training split (index 0 is padding)."""
    tr = td.split == TRAIN
    if td.kind == "next_item":
        end = td.end[tr].astype(np.int64)
        lo = np.ones_like(end) if train.history == "all" else np.maximum(1, end - max_length)
        targets = segments(stream, td.user[tr], lo, end)[1]
    else:
        targets = td.target[tr].astype(np.int64)
    return np.bincount(targets, minlength=stream.n_targets(td.name) + 1)


def popularity_ranks(
    counts: np.ndarray,
    targets: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    inputs: np.ndarray | None = None,
) -> np.ndarray:
    """Rank of each target (1..n) among items 1..n scored by `counts`, as metrics.ranks_full ranks it:
    1 + the other items with a count >= the target's, leaving out the `seen` (input, item) pairs of the
    example's input (`inputs[i]`, default i; examples that share an input share its pairs)."""
    n = len(counts) - 1
    ct = counts[targets]
    ranks = n - np.searchsorted(np.sort(counts[1:]), ct, side="left")  # items >= the target, itself included
    if seen is None:
        return ranks
    inp = np.arange(len(targets)) if inputs is None else inputs.astype(np.int64)
    pair = np.unique(seen[0].astype(np.int64) * (n + 1) + seen[1])  # each (input, item) once
    rows, items = pair // (n + 1), pair % (n + 1)
    top = int(counts.max(initial=0)) + 1
    by_count = np.sort(rows * top + counts[items])  # per input, the counts of its seen items, sorted
    ahead = np.searchsorted(by_count, (inp + 1) * top) - np.searchsorted(by_count, inp * top + ct)
    target_seen = np.isin(inp * (n + 1) + targets, pair)  # the target was counted among its own seen items
    return ranks - ahead + target_seen


def _distinct_inputs(td: TaskData, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first example of each distinct (user, end) input among `mask`, each example's input index,
    the examples' indices)."""
    idx = np.flatnonzero(mask)
    key = td.user[idx].astype(np.int64) * (1 << 32) + td.end[idx]
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return idx[first], inv.reshape(-1), idx


def most_popular(stream: Stream, task: str, train: TrainConfig, max_length: int) -> dict:
    r = most_popular_ranks(stream, task, train, max_length)
    out: dict = rank_metrics(r, train.ks, ci=True)
    out["protocol"] = "full" + ("-exclude-seen" if train.exclude_seen else "")
    out["examples"] = len(r)
    return out


def most_popular_ranks(stream: Stream, task: str, train: TrainConfig, max_length: int) -> np.ndarray:
    """The rank of each test target (the task's test examples in stream order) when every item is
    scored by its count among the task's training targets."""
    td = stream.task(task)
    counts = training_item_counts(stream, td, train, max_length)
    te = td.split == TEST
    targets = td.target[te].astype(np.int64)
    r = popularity_ranks(counts, targets)
    if train.exclude_seen:  # one set of seen items per distinct input (an item_rec user has many targets)
        first, inv, _ = _distinct_inputs(td, te)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(0, len(first) + CHUNK, CHUNK))
        for c, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):  # CHUNK inputs at a time
            ex, f = order[a:b], first[c * CHUNK : (c + 1) * CHUNK]
            seen = segments(stream, td.user[f], np.zeros(len(f)), td.end[f])
            r[ex] = popularity_ranks(counts, targets[ex], seen, inv[ex] - c * CHUNK)
    return r


def majority(stream: Stream, task: str) -> dict:
    td = stream.task(task)
    y_tr, y = td.target[td.split == TRAIN], td.target[td.split == TEST]
    k = int(np.argmax(np.bincount(y_tr, minlength=len(td.classes or [0])))) if len(y_tr) else 0
    acc = float((y == k).mean()) if len(y) else math.nan
    names = td.classes or []
    label = names[k] if k < len(names) else str(k)
    if td.kind == "binary":  # a constant score: AUC 0.5 (NaN when the test split holds one class)
        return {"AUC": auc(np.zeros(len(y)), y), "accuracy": acc, "protocol": "auc", "examples": len(y), "class": label}
    return {"accuracy": acc, "protocol": "accuracy", "examples": len(y), "class": label}


def bag_of_items(stream: Stream, users: np.ndarray, ends: np.ndarray, window: int | None = None) -> sp.csr_matrix:
    """[n, n_items + 1] binary: 1 where the example's input seq[:end] (its last `window` items, when
    given) holds the item."""
    lo = np.zeros(len(users)) if window is None else np.maximum(0, ends.astype(np.int64) - window)
    rows, items = segments(stream, users, lo, ends)
    x = sp.csr_matrix((np.ones(len(rows)), (rows, items)), shape=(len(users), stream.n_items + 1))
    x.data[:] = 1.0  # a repeated item counts once (the conversion summed duplicates)
    return x


def _evaluate(kind: str, model, x: sp.csr_matrix, y: np.ndarray, n_classes: int) -> dict:
    if kind == "binary":
        s = model.decision_function(x) if len(y) else np.zeros(0)
        acc = float(((s > 0).astype(np.int64) == y).mean()) if len(y) else math.nan
        return {"AUC": auc(s, y), "accuracy": acc, "protocol": "auc", "examples": len(y)}
    p = np.full((len(y), n_classes), -1.0)  # classes absent from training never win
    if len(y):
        p[:, model.classes_] = model.predict_proba(x)
    ranks = (p >= p[np.arange(len(y)), y][:, None]).sum(1)  # pessimistic on ties, as metrics.ranks_from_scores
    return {"accuracy": accuracy(ranks), "protocol": "accuracy", "examples": len(y)}


def bag_of_items_logreg(stream: Stream, task: str) -> dict | None:
    """Test metrics of the C best on validation (None when training holds fewer than two classes)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    td = stream.task(task)
    n_classes = max(len(td.classes or []), int(td.target.max(initial=0)) + 1)
    data = {}
    for split in (TRAIN, VALID, TEST):
        m = td.split == split
        data[split] = (bag_of_items(stream, td.user[m], td.end[m]), td.target[m].astype(np.int64))
    if len(np.unique(data[TRAIN][1])) < 2:
        return None
    metric = "AUC" if td.kind == "binary" else "accuracy"
    best: tuple[float, float, float, LogisticRegression] | None = None
    for c in C_GRID:
        # One BLAS thread: lbfgs makes many tiny vector operations, and threaded OpenBLAS made them
        # ~70x slower (3 s instead of 0.05 s per fit on ML-100K, 2 cores).
        with threadpool_limits(limits=1, user_api="blas"):
            model = LogisticRegression(C=c, max_iter=MAX_ITER, random_state=0).fit(*data[TRAIN])
        v = float(_evaluate(td.kind, model, *data[VALID], n_classes)[metric])
        if best is None or np.nan_to_num(v, nan=-1.0) > best[0]:
            best = (float(np.nan_to_num(v, nan=-1.0)), v, c, model)
    assert best is not None
    out = _evaluate(td.kind, best[3], *data[TEST], n_classes)
    out["C"], out[f"valid_{metric}"] = best[2], best[1]
    return out


def _ridge_ranks(
    stream: Stream, td: TaskData, split: int, v: torch.Tensor, c: torch.Tensor, train: TrainConfig, window: int
) -> np.ndarray:
    """Ranks of the split's targets under scores [x, 1] V diag(shrink) C, C = V'[X 1]'Y: the ridge
    solution through the eigenvectors V of the Gram matrix (one eigendecomposition serves every lambda)."""
    first, inv, ex = _distinct_inputs(td, td.split == split)
    x = bag_of_items(stream, td.user[first], td.end[first], window)
    x = sp.hstack([x, np.ones((len(first), 1))]).tocsr().astype(np.float64)
    scores = torch.from_numpy(np.asarray(x @ v.numpy(), dtype=np.float32)) @ c  # [inputs, n_targets + 1]
    scores[:, 0] = -torch.inf  # padding is never a candidate
    seen = torch.zeros(scores.shape, dtype=torch.bool)
    if train.exclude_seen:  # seen items are not candidates; a seen target keeps its own score
        rows, items = segments(stream, td.user[first], np.zeros(len(first)), td.end[first])
        seen[torch.from_numpy(rows), torch.from_numpy(items)] = True
    targets = torch.from_numpy(td.target[ex].astype(np.int64))
    ranks = np.empty(len(ex), dtype=np.int64)
    for a in range(0, len(ex), CHUNK):
        rows_ = torch.from_numpy(inv[a : a + CHUNK])
        s, t = scores[rows_], targets[a : a + CHUNK]
        beats = (s >= s.gather(1, t[:, None])) & ~seen[rows_]
        beats[torch.arange(len(t)), t] = False  # the target never outranks itself
        ranks[a : a + CHUNK] = (beats.sum(1) + 1).numpy()
    return ranks


def bag_of_items_ridge(stream: Stream, task: str, train: TrainConfig, window: int) -> dict | None:
    """Test metrics of the ridge reference at the lambda best on validation (None when the catalogue is
    too large for a dense solve or training has no examples)."""
    td = stream.task(task)
    n = stream.n_targets(task) + 1  # outputs; the inputs are the stream's items
    if max(n, stream.n_items + 1) > RIDGE_MAX_ITEMS or not (td.split == TRAIN).any():
        return None
    first, inv, ex = _distinct_inputs(td, td.split == TRAIN)
    x = bag_of_items(stream, td.user[first], td.end[first], window)
    x = sp.hstack([x, np.ones((len(first), 1))]).tocsr().astype(np.float64)
    y = sp.csr_matrix((np.ones(len(ex)), (inv, td.target[ex])), shape=(len(first), n))
    evals, v = torch.linalg.eigh(torch.from_numpy((x.T @ x).toarray()))  # float64: the Gram is ill-conditioned
    evals, v = evals.float().clamp(min=0), v.float()  # the products below in float32 (2x faster)
    vc = v.T @ torch.from_numpy(np.asarray((x.T @ y).todense(), dtype=np.float32))  # V'X'Y, [inputs + 1, n]
    best: tuple[float, float] | None = None
    for lam in RIDGE_LAMBDAS:
        c = vc / (evals + lam)[:, None]
        ranks = _ridge_ranks(stream, td, VALID, v, c, train, window)
        score = float(rank_metrics(ranks, train.ks)[train.monitor]) if len(ranks) else -1.0
        if best is None or score > best[0]:  # ties go to the smaller lambda
            best = (score, lam)
    assert best is not None
    c = vc / (evals + best[1])[:, None]
    out: dict = rank_metrics(_ridge_ranks(stream, td, TEST, v, c, train, window), train.ks, ci=True)
    out["protocol"] = "full" + ("-exclude-seen" if train.exclude_seen else "")
    out["examples"] = int((td.split == TEST).sum())
    out["lambda"], out[f"valid_{train.monitor}"] = best[1], best[0]
    return out


def reference_rows(stream: Stream, cfg: StreamConfig) -> dict[str, dict[str, dict]]:
    """{reference: {task: test metrics}} for every task of the stream where the reference applies."""
    order = {t.name: i for i, t in enumerate(cfg.tasks)}
    rows: dict[str, dict[str, dict]] = {
        "most_popular": {},
        "bag_of_items_ridge": {},
        "majority": {},
        "bag_of_items_logreg": {},
    }
    for name, td in stream.tasks.items():
        if td.kind in ("next_item", "item_rec"):
            train = cfg.train_for(order.get(name, len(order)), name)
            rows["most_popular"][name] = most_popular(stream, name, train, cfg.input_length(train))
            ridge = bag_of_items_ridge(stream, name, train, cfg.input_length(train)) if td.kind == "item_rec" else None
            if ridge is not None:
                rows["bag_of_items_ridge"][name] = ridge
        elif td.kind in ("classify", "binary"):
            rows["majority"][name] = majority(stream, name)
            lr = bag_of_items_logreg(stream, name)
            if lr is not None:
                rows["bag_of_items_logreg"][name] = lr
    return {k: v for k, v in rows.items() if v}
