"""The method contract: stateless task selection, base + adapters on disk, an open run, devices, and
the errors a damaged or foreign adapter gives."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import pytest
import torch
from synthetic import synthetic_config

from lifelongrec.config import TaskConfig, load_config
from lifelongrec.errors import ConfigError, LifelongrecError
from lifelongrec.predict import Predictor
from lifelongrec.runner import add_task, run_stream

FAST = ["train.epochs=2", "train.patience=5"]
QUIET = {"log": lambda *_: None}
SRC = Path(__file__).resolve().parents[1] / "src" / "lifelongrec"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One finished Conure run and one PeterRec run on the synthetic stream."""
    tmp = tmp_path_factory.mktemp("contract")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFELONGREC_CACHE", str(tmp / "cache"))
        cfg = load_config(synthetic_config(tmp), FAST)
        for m in ("conure", "peterrec"):
            run_stream(cfg, m, tmp / m, **QUIET)
            out[m] = tmp / m
    return out


def _answers(p: Predictor, task: str, histories: list[list[str]]) -> list:
    return [p.predict(task, h, k=10) if task != "emb" else p.embed("T2", h) for h in histories]


def test_threads_serving_different_tasks_get_the_sequential_results(runs):
    """Two runs, every task of each, evaluated from 6 threads at once, many times: exactly the answers
    of one thread asking one task at a time (no task is ever selected by setting state on a module)."""
    histories = [[f"i{(s + k) % 20 + 1}" for k in range(3 + s % 7)] for s in range(12)]
    preds = {m: Predictor(d) for m, d in runs.items()}
    want = {(m, t): _answers(p, t, histories) for m, p in preds.items() for t in ("T1", "T2", "T3")}
    failures: list[str] = []

    def worker(m: str, t: str) -> None:
        for _ in range(25):
            if _answers(preds[m], t, histories) != want[(m, t)]:
                failures.append(f"{m}/{t}")
                return

    threads = [threading.Thread(target=worker, args=key) for key in want]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures
    # the tasks really differ (otherwise the test would prove nothing)
    assert want[("conure", "T1")] != want[("conure", "T2")]
    assert preds["peterrec"].embed("T1", histories[0]) != preds["peterrec"].embed("T2", histories[0])


def test_method_task_nets_evaluate_concurrently(tmp_path):
    """The training-side contract too: task_net(j) of a live Conure method, evaluated from threads."""
    from lifelongrec.data.prepare import open_stream
    from lifelongrec.data.stream import TEST
    from lifelongrec.methods import TaskInfo, build_method
    from lifelongrec.objectives import objective_for

    cfg = load_config(synthetic_config(tmp_path), FAST).for_method("conure")
    stream, _ = open_stream(cfg)
    m = build_method("conure", cfg, stream)
    for i, (t, kind) in enumerate([("T1", "next_item"), ("T2", "item_rec")]):
        info = TaskInfo(t, kind, i)
        m.before_task(info)
        m.stages.advance(t, m.stages.of[t].__class__("prune"))
        m.prune(info)
        m.stages.advance(t, m.stages.of[t].__class__("retrain"))
        m.stages.advance(t, m.stages.of[t].__class__("frozen"))
        m.after_task(info)
    m.module().eval()
    with torch.no_grad():
        want = {t: objective_for(stream, t, m.task_net(t), cfg).evaluate(TEST) for t in ("T1", "T2")}
    got: dict[str, list] = {"T1": [], "T2": []}

    def worker(t: str) -> None:
        with torch.no_grad():
            for _ in range(10):
                got[t].append(objective_for(stream, t, m.task_net(t), cfg).evaluate(TEST))

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("T1", "T2", "T1", "T2")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(r == want[t] for t in got for r in got[t]) and len(got["T1"]) == 20


def test_run_folder_is_base_plus_adapters(runs):
    for d in runs.values():
        s = json.loads((d / "summary.json").read_text())
        base = d / "base" / "base.safetensors"
        assert base.stat().st_size == s["base_file_bytes"]
        files = {t: (d / "adapters" / t / "adapter.safetensors").stat().st_size for t in s["tasks"]}
        assert files == s["adapter_file_bytes"]
        assert not list(d.glob("tasks/*/artifact*"))  # the old per-task whole artifacts are gone
    # Conure stores the backbone and its uint8 owner table once; a task adds only its head
    from safetensors.torch import load_file

    base = load_file(runs["conure"] / "base" / "base.safetensors")
    owners = [v for k, v in base.items() if k.startswith("owner.")]
    assert owners and all(v.dtype == torch.uint8 for v in owners)
    t2 = load_file(runs["conure"] / "adapters" / "T2" / "adapter.safetensors")
    assert all(k.startswith("head.") for k in t2)
    pt = load_file(runs["peterrec"] / "adapters" / "T2" / "adapter.safetensors")
    assert {k.split(".")[0] for k in pt} == {"head", "patches"}


def test_no_method_module_is_imported_or_named_outside_the_methods():
    names = ["seqft", "sinmo", "finesmax", "stl", "mtl", "peterrec", "conure", "pcl", "mptrec", "mptrec_faithful"]
    pattern = re.compile(
        r"methods\.(" + "|".join(names) + r")\b|from \.methods import .*\b(" + "|".join(names) + r")\b"
    )
    for f in ("runner.py", "predict.py", "report.py", "engine.py"):
        text = (SRC / f).read_text()
        assert not pattern.search(text), f
        for n in [*names, "conure_minus", "peterrec_mode", "owner"]:
            assert not re.search(rf"[\"']{n}[\"']", text), (f, n)


def test_an_open_run_learns_one_more_task_without_touching_earlier_ones(tmp_path):
    cfg = load_config(synthetic_config(tmp_path), FAST)
    run_stream(cfg, "conure", tmp_path / "straight", order=["T1", "T2", "T3"], **QUIET)
    run_stream(cfg, "conure", tmp_path / "open", order=["T1", "T2"], **QUIET)
    adapters = tmp_path / "open" / "adapters"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in adapters.rglob("*") if p.is_file()}
    add_task(tmp_path / "open", "T3", **QUIET)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before}
    assert after == before  # not a byte and not a timestamp of T1's and T2's adapters changed
    straight, opened = ((tmp_path / x / "matrix.csv").read_text() for x in ("straight", "open"))
    assert opened == straight  # the result of a run that had T3 in its order from the start
    run = json.loads((tmp_path / "open" / "run.json").read_text())
    assert run["order"] == ["T1", "T2", "T3"] and run["status"] == "complete"
    # a task the config never had: a binary profile task, added with its own TaskConfig
    new = TaskConfig(name="female", kind="binary", label={"field": "gender", "positive": "F"})
    s = add_task(tmp_path / "open", new, **QUIET)
    assert s["tasks"] == ["T1", "T2", "T3", "female"] and s["metrics"][-1] == "AUC"
    assert 0.0 <= s["final"][-1] <= 1.0
    assert Predictor(tmp_path / "open").classify("female", ["i1", "i2"])["class"] in ("M", "F")
    with pytest.raises(LifelongrecError, match="already learned"):
        add_task(tmp_path / "open", "T2", **QUIET)


def test_method_settings_are_their_own_class_and_not_part_of_the_data_key(tmp_path):
    from lifelongrec.data.stream import stream_key

    cfg = load_config(synthetic_config(tmp_path), [*FAST, "method.name=conure", "method.prune=[0.5]"])
    assert cfg.method is not None and type(cfg.method).__name__ == "ConureSettings" and cfg.method.prune == [0.5]
    other = load_config(synthetic_config(tmp_path), [*FAST, "finetune.lr=0.1"], method="peterrec")
    assert stream_key(cfg) == stream_key(other)
    with pytest.raises(ConfigError, match="prune_ratio"):
        load_config(synthetic_config(tmp_path), ["method.name=conure", "method.prune_ratio=0.5"])
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        load_config(synthetic_config(tmp_path), ["method.name=nope"])
    with pytest.raises(ConfigError, match="holds settings of conure"):
        load_config(synthetic_config(tmp_path), ["method.name=conure", "method.prune=[0.5]"], method="peterrec")
    with pytest.raises(ConfigError, match="holds settings of conure"):
        cfg.for_method("peterrec")


@pytest.mark.parametrize("kind", ["next_item", "item_rec", "classify", "binary"])
def test_every_tensor_follows_train_device(tmp_path, kind):
    """On the meta device, nothing can be computed by accident on the CPU: a tensor left behind would
    raise when it meets one on meta. The GPU figure itself waits for a GPU machine (see RESULTS)."""
    import numpy as np
    import torch.fx.experimental._config as fx_config

    from lifelongrec.data.prepare import open_stream
    from lifelongrec.methods import TaskInfo, build_method
    from lifelongrec.objectives import objective_for

    cfg = load_config(synthetic_config(tmp_path), [*FAST, "train.device=meta"]).for_method("peterrec")
    if kind == "binary":
        data = cfg.model_dump(mode="json", by_alias=True)
        data["tasks"].append({"name": "TB", "kind": "binary", "label": {"field": "gender", "positive": "F"}})
        cfg = type(cfg).model_validate(data)
    stream, _ = open_stream(cfg)
    task = {"next_item": "T1", "item_rec": "T2", "classify": "T3", "binary": "TB"}[kind]
    m = build_method("peterrec", cfg, stream)
    if kind != "next_item":
        m.before_task(TaskInfo("T1", "next_item", 0))
        m.after_task(TaskInfo("T1", "next_item", 0))
    net = m.before_task(TaskInfo(task, kind, 0 if kind == "next_item" else 1))
    assert {p.device.type for p in m.module().parameters()} == {"meta"}
    obj = objective_for(stream, task, net, cfg)
    batch = next(iter(obj.train_batches(np.random.default_rng(0), 8)))
    assert {t.device.type for t in batch.values()} == {"meta"}
    # boolean masks (h[m]) have a data-dependent size; on meta, assume every element is selected
    with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
        loss, n = obj.loss(batch, torch.Generator())
    assert loss.device.type == "meta"


def test_predictor_loads_to_the_device_asked_for(runs):
    p = Predictor(runs["conure"], device="meta")
    net = p.model("T2")
    assert {q.device.type for q in p.base.backbone.parameters()} == {"meta"}
    assert {q.device.type for q in net.head.parameters()} == {"meta"}
    ids = torch.tensor([[1, 2, 3]], device="meta")
    assert net.user_vectors({"items": ids}).device.type == "meta"


# ---------------------------------------------------------------- damaged and foreign adapters


def _copy(runs, tmp_path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(runs["conure"], d)
    return d


def _cli_error(d: Path, task: str = "T2") -> str:
    """Run `lifelongrec predict` through main(): one `error:` line, exit status 2, nothing on stdout."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "lifelongrec.cli", "predict", str(d), "--task", task, "i1", "i2"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_adapter_of_another_base_is_refused(runs, tmp_path):
    from safetensors.torch import load_file, save_file

    from lifelongrec.fsutil import sha256_file

    d = _copy(runs, tmp_path)
    base = load_file(d / "base" / "base.safetensors")
    key = next(k for k in base if k.startswith("backbone.") and k.endswith("ln.weight"))
    base[key] = base[key] + 1.0  # a weight every task reads
    save_file(base, d / "base" / "base.safetensors")
    meta = json.loads((d / "base" / "base.json").read_text())
    meta.update(
        sha256=sha256_file(d / "base" / "base.safetensors"), bytes=(d / "base" / "base.safetensors").stat().st_size
    )
    (d / "base" / "base.json").write_text(json.dumps(meta))
    line = _cli_error(d)
    assert "adapters/T2/adapter_config.json" in line and "another base" in line


def test_conure_adapter_ignores_weights_of_later_tasks(runs, tmp_path):
    """A weight owned by a later task (or free) is not part of what an earlier task reads: changing it
    leaves the earlier adapter valid and its answers identical; the later task's adapter is refused."""
    from safetensors.torch import load_file, save_file

    from lifelongrec.fsutil import sha256_file

    d = _copy(runs, tmp_path)
    want = Predictor(d).predict("T1", ["i1", "i2"])
    base = load_file(d / "base" / "base.safetensors")
    name = next(k for k in base if k.startswith("owner.") and (base[k] == 3).any())
    w = "backbone." + name[len("owner.") :]
    base[w] = torch.where(base[name] == 3, base[w] + 1.0, base[w])
    save_file(base, d / "base" / "base.safetensors")
    meta = json.loads((d / "base" / "base.json").read_text())
    meta.update(
        sha256=sha256_file(d / "base" / "base.safetensors"), bytes=(d / "base" / "base.safetensors").stat().st_size
    )
    (d / "base" / "base.json").write_text(json.dumps(meta))
    assert Predictor(d).predict("T1", ["i1", "i2"]) == want
    assert "another base" in _cli_error(d, "T3")


def test_truncated_adapter_file(runs, tmp_path):
    d = _copy(runs, tmp_path)
    f = d / "adapters" / "T2" / "adapter.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    line = _cli_error(d)
    assert "adapters/T2/adapter.safetensors" in line and "truncated" in line


@pytest.mark.parametrize(
    "change, message",
    [
        ({"method": "nosuch"}, "written by method 'nosuch'"),
        ({"format_version": 99}, "format version 99, this lifelongrec reads format 2 (written by a newer"),
    ],
)
def test_foreign_adapter_config(runs, tmp_path, change, message):
    d = _copy(runs, tmp_path)
    f = d / "adapters" / "T2" / "adapter_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), **change}))
    line = _cli_error(d)
    assert "adapters/T2/adapter_config.json" in line and message in line


def test_task_name_with_a_path_separator(runs, tmp_path):
    assert "unknown task '../T2'" in _cli_error(runs["conure"], "../T2")
    with pytest.raises(ConfigError, match=r"tasks\.1\.name"):
        load_config(synthetic_config(tmp_path), ["tasks.1.name=../x"])


def test_a_run_folder_of_the_old_layout(runs, tmp_path):
    d = _copy(runs, tmp_path)
    f = d / "run.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "version": 1}))
    line = _cli_error(d)
    assert "run format 1" in line and "reads run format 2" in line


@pytest.mark.parametrize("method", ["conure", "peterrec", "stl"])
def test_a_stream_may_start_with_a_profile_task(tmp_path, method):
    """The first task need not be next-item prediction (MPT-Rec's streams start with labelled tasks)."""
    cfg = load_config(synthetic_config(tmp_path), FAST)
    s = run_stream(cfg, method, tmp_path / "run", order=["T3", "T1", "T2"], **QUIET)
    assert s["tasks"] == ["T3", "T1", "T2"] and s["metrics"][0] == "accuracy"
    p = Predictor(tmp_path / "run")
    assert p.classify("T3", ["i1", "i2"])["class"] in ("M", "F") and len(p.recommend("T1", ["i1"], k=3)["items"]) == 3
