"""Every supported format, read from small synthetic files that these tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write

from lifelongrec.config import Columns, SourceConfig
from lifelongrec.data.conure_format import conure_stats, read_conure
from lifelongrec.data.sources import cache_root
from lifelongrec.data.store import InteractionStore, open_store


def store_of(**kw) -> InteractionStore:
    return open_store(SourceConfig(**kw), cache_root())


def user_items(s: InteractionStore, user: str) -> list[str]:
    k = list(s.users).index(user)
    return [s.items[i] for i in s.item_seq[s.offsets[k] : s.offsets[k + 1]]]


def test_csv_with_ties_crlf_and_empty_lines(tmp_path):
    text = "user_id,item_id,timestamp,rating\n\n7,x,5,1\n7,y,5,2\n7,z,1,3\n\n8,x,2,4\n"
    p = write(tmp_path / "r.csv", text, newline="\r\n")
    s = store_of(path=str(p), format="csv", columns=Columns(rating="rating"))
    assert user_items(s, "7") == ["z", "x", "y"]  # z is earliest; x before y by file row (tie on 5)
    assert s.meta["timestamp_ties"] == 1
    assert s.values["rating"][s.offsets[0] : s.offsets[1]].tolist() == [3, 1, 2]
    assert s.n_events == 4 and list(s.users) == ["7", "8"]


def test_numeric_ids_sort_numerically(tmp_path):
    p = write(tmp_path / "r.tsv", "u\ti\tt\n1\t10\t1\n1\t9\t2\n2\t100\t1\n")
    s = store_of(path=str(p), format="tsv", columns=Columns(user="u", item="i", timestamp="t"))
    assert list(s.items) == ["", "9", "10", "100"]


def test_header_variants_with_column_mapping(tmp_path):
    p = write(tmp_path / "r.csv", '"Member","Product","When","Stars"\nann,p1,3,5\nann,p2,1,4\n')
    s = store_of(
        path=str(p), format="csv", columns=Columns(user="Member", item="Product", timestamp="When", rating="Stars")
    )
    assert user_items(s, "ann") == ["p2", "p1"]


def test_csv_without_timestamp_uses_file_order(tmp_path):
    p = write(tmp_path / "r.csv", "user_id,item_id\nu,c\nu,a\nu,b\n")
    s = store_of(path=str(p), format="csv", columns=Columns(timestamp=None))
    assert user_items(s, "u") == ["c", "a", "b"]


def test_recbole_atomic_files_with_profiles(tmp_path):
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\nA\tThe Film (1999)\t5\t20\nA\tOther\t3\t10\n"
    p = write(tmp_path / "d.inter", inter, newline="\r\n")
    write(tmp_path / "d.user", "user_id:token\tage:float\tgender:token\nA\t25\tF\n", newline="\r\n")
    s = store_of(path=str(p), format="recbole")
    assert user_items(s, "A") == ["Other", "The Film (1999)"]
    assert s.labels["gender"].tolist() == ["F"] and s.labels["age"].tolist() == ["25"]


def test_grouplens_dat_latin1(tmp_path):
    write(
        tmp_path / "ratings.dat", "1::10::5::978300760\n1::20::3::978300700\n2::10::4::978300800\n", encoding="latin-1"
    )
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::Montréal\n", encoding="latin-1")
    s = store_of(path=str(tmp_path), format="grouplens")
    assert user_items(s, "1") == ["20", "10"]
    assert s.labels["gender"].tolist() == ["F", "M"]
    assert s.labels["zip_code"].tolist() == ["48067", "Montréal"]


def test_grouplens_100k_layout(tmp_path):
    write(tmp_path / "u.data", "196\t242\t3\t881250949\n196\t302\t3\t881250940\n")
    write(tmp_path / "u.user", "196|49|M|writer|55105\n")
    s = store_of(path=str(tmp_path / "u.data"), format="grouplens")
    assert user_items(s, "196") == ["302", "242"]
    assert s.labels["occupation"].tolist() == ["writer"]


def test_parquet_with_mapping_and_row_order(tmp_path):
    t = pa.table({"uid": [1, 1, 1], "iid": ["x", "y", "z"], "ts": [2.0, 1.0, 1.0], "r": [1.0, 2.0, 3.0]})
    pq.write_table(t, tmp_path / "r.parquet")
    s = store_of(
        path=str(tmp_path / "r.parquet"),
        format="parquet",
        columns=Columns(user="uid", item="iid", timestamp="ts", rating="r"),
    )
    assert user_items(s, "1") == ["y", "z", "x"]  # y and z tie; file row decides


def test_tenrec_file_order_and_labels(tmp_path):
    text = (
        "user_id,item_id,click,follow,like,share,video_category,watching_times,gender,age\n"
        "5,30,1,0,1,0,2,1,0,0\n5,10,1,0,0,0,1,2,0,0\n6,30,1,0,0,1,2,1,2,3\n"
    )
    s = store_of(path=str(write(tmp_path / "QK-video.csv", text)), format="tenrec", unknown_labels=[0])
    assert user_items(s, "5") == ["30", "10"]  # no timestamp: file order is click order
    assert s.values["like"].tolist() == [1, 0, 0]
    assert s.labels["gender"].tolist() == ["0", "2"]  # 0 is kept in the store; tasks treat it as unknown
    assert s.meta["order"].startswith("file row")


def test_profiles_from_separate_csv(tmp_path, ratings_csv, users_csv):
    from lifelongrec.config import ProfileSource

    s = store_of(
        path=str(ratings_csv),
        format="csv",
        columns=Columns(rating="rating"),
        profiles=ProfileSource(path=str(users_csv), fields=["gender"]),
    )
    assert list(s.labels) == ["gender"] and s.labels["gender"][0] == "M"


def test_store_is_cached_and_reingested_when_file_changes(tmp_path):
    p = write(tmp_path / "r.csv", "user_id,item_id,timestamp\na,x,1\n")
    s1 = store_of(path=str(p), format="csv")
    s2 = store_of(path=str(p), format="csv")
    assert s1.meta["fingerprint"] == s2.meta["fingerprint"]
    write(p, "user_id,item_id,timestamp\na,x,1\na,y,2\n")
    import os

    os.utime(p, ns=(1, 10**18))
    assert store_of(path=str(p), format="csv").n_events == 2


def test_conure_format(tmp_path):
    p = write(
        tmp_path / "original_desen_finetune_like_nouserID.csv",
        "0,0,0,1,2,3,4,,2,3,4\n\n0,5,6,,7\n9,,1\n",
        newline="\r\n",
    )
    ex = read_conure(p)
    assert ex.n_lines == 3
    assert np.diff(ex.offsets).tolist() == [4, 2, 1]
    assert ex.example_line.tolist() == [0, 0, 0, 1, 2] and ex.targets.tolist() == [2, 3, 4, 7, 1]
    s = conure_stats(ex)
    assert s["examples"] == 5 and s["input_items"] == 7


@pytest.mark.parametrize(
    "text, message",
    [
        ("0,0,0,,5\n", "no history"),
        ("1,2,3\n", "no ',,'"),
        ("1,x,3,,4\n", "entry 2 is 'x'"),
        ("1,0,3,,4\n", "padding"),
        ("1,2,,y\n", "target entry 1"),
    ],
)
def test_conure_format_errors(tmp_path: Path, text: str, message: str):
    from lifelongrec.errors import DataError

    p = write(tmp_path / "c.csv", "0,1,2,,3\n" + text)
    with pytest.raises(DataError, match=message) as e:
        read_conure(p)
    assert "line 2" in str(e.value) and str(p) in str(e.value)
