"""A command-line fuzz: every subcommand with random or malformed option values, and every file of a
finished run folder damaged in several ways, each case through the real `lifelongrec` app. A case
passes when it exits 0, is a usage error (exit status 2 from the parser), or raises a LifelongrecError
(which `main()` prints as one `error:` line with status 2). Anything else is a traceback: a failure.

`pytest tests/test_cli_fuzz.py -s` prints the number of cases tried (recorded in bench/RESULTS.md).
"""

from __future__ import annotations

import json
import random
import shutil
import traceback
from pathlib import Path

import pytest
from synthetic import synthetic_config
from typer.testing import CliRunner

from lifelongrec.cli import app, user_error
from lifelongrec.config import load_config
from lifelongrec.runner import run_stream

SEED = 20261130
WEIRD = [
    "",
    "-1",
    "0",
    "99999999999999999999",
    "nan",
    "inf",
    "1e309",
    "x" * 5000,
    "../../etc/passwd",
    "/",
    "caf\u00e9 \U0001f600",
    "a'b\"c",
    "--",
    "T1,T1",
    ",",
    "\t",
    "null",
    "[1, 2",
    "{a: }",
]
BAD_SETS = [
    "train.epochs=-1",
    "train.epochs=abc",
    "train.epochs",
    "=1",
    "model.d=0",
    "model.name=transformer",
    "tasks.9.name=x",
    "tasks.x.name=y",
    "train=1",
    "train.epochs.x=1",
    "method.name=nosuch",
    "method.prune=[2]",
    "split.fractions=[1, 1, 1]",
    "split.fractions=[0.5]",
    "sequence.max_length=0",
    "tasks.1.name=../x",
    "tasks.1.kind=regress",
    "source.path=/nonexistent/file.csv",
    "train.device=tpu",
    "train.device=cuda:7",
    "finetune.nosuch=1",
    "source=3",
    "tasks=[]",
    "name=",
]


def _outcome(args: list[str]) -> str | None:
    """None when the case behaved; otherwise a short description of the traceback."""
    r = CliRunner().invoke(app, args)
    if r.exit_code == 0 or r.exception is None or isinstance(r.exception, SystemExit):
        return None
    if user_error(r.exception) is not None:  # what main() prints as one `error:` line, exit status 2
        return None
    tb = "".join(traceback.format_exception(r.exception)).strip().splitlines()[-1]
    return f"{[a[:60] for a in args[:6]]} -> {tb[:300]}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFELONGREC_CACHE", str(tmp / "cache"))
        cfg = load_config(synthetic_config(tmp), ["train.epochs=1", "train.patience=5"])
        run_stream(cfg, "conure", tmp / "run", log=lambda *_: None)
        from lifelongrec.data.prepare import open_stream
        from lifelongrec.pretrain import pretrain

        pretrain(cfg, open_stream(cfg)[0], tmp / "pre", log=lambda *_: None)
    (tmp / "junk.bin").write_bytes(bytes(random.Random(SEED).randrange(256) for _ in range(300)))
    return tmp


def _option_cases(world: Path) -> list[list[str]]:
    rng = random.Random(SEED)
    run, config, junk = str(world / "run"), str(world / "synthetic.yaml"), str(world / "junk.bin")
    paths = [run, config, junk, str(world), str(world / "missing"), "/dev/null", *WEIRD[:4]]

    def weird() -> str:
        return rng.choice(WEIRD + paths)

    cases: list[list[str]] = []
    for _ in range(12):
        cases += [
            ["data", "fetch", weird()],
            ["data", "fetch", "ml-100k", "--path", weird()],
            ["data", "stats", "--path", weird(), "--format", rng.choice(["csv", "tsv", "parquet", "conure", weird()])],
            ["data", "stats", "--config", weird()],
            ["data", "prepare", "--config", weird(), "--out", str(world / "prep")],
            ["stream", "run", "--config", config, "--method", weird(), "--out", str(world / "x")],
            ["stream", "run", "--config", config, "--order", weird(), "--out", str(world / "y")],
            ["stream", "run", "--resume", weird()],
            ["stream", "run", "--config", config, "--init-from", weird(), "--out", str(world / "z")],
            ["stream", "run", "--config", config, "--branch-from", weird(), "--out", str(world / "w")],
            ["report", weird(), "--out", str(world / "rep"), "--no-plots"],
            ["predict", weird(), "--task", "T2", "i1"],
            ["predict", run, "--task", weird(), "i1"],
            ["predict", run, "--task", "T2", weird()],
            ["predict", run, "--task", "T2", "--k", weird(), "i1"],
            ["predict", run, "--task", "T1", "--histories", weird()],
            ["predict", run, "--task", "T2", "--device", weird(), "i1"],
            # serve: never a valid run with valid options, so no server starts
            ["serve", rng.choice([*WEIRD, config, junk, str(world), str(world / "missing")])],
            ["serve", run, "--port", rng.choice(WEIRD)],
            ["serve", run, "--max-batch", rng.choice(WEIRD)],
            ["serve", run, "--api-key-env", rng.choice(WEIRD)],
            ["task", "add", weird(), "--name", "T9", "--kind", "classify", "--labels", config],
            ["task", "add", run, "--name", weird(), "--kind", "classify", "--labels", junk],
            ["task", "add", run, "--name", "T9", "--kind", weird(), "--labels", config],
            ["task", "add", run, "--name", "T9", "--kind", "binary", "--labels", weird()],
            ["task", "add", run, "--name", "T9", "--kind", "classify", "--labels", config, "--set", weird()],
        ]
    for s in BAD_SETS:
        cases += [
            ["stream", "run", "--config", config, "--set", s, "--out", str(world / "s")],
            ["pretrain", "--config", config, "--set", s, "--out", str(world / "p")],
            ["data", "prepare", "--config", config, "--set", s, "--out", str(world / "prep")],
        ]
    return cases


def _damaged_runs(world: Path, name: str = "run") -> list[tuple[str, Path]]:
    """Copies of a finished run (or pretrain folder), each with one file deleted, halved, replaced by
    random bytes or by JSON of the wrong shape."""
    rng = random.Random(SEED + 1)
    src = world / name
    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file() and "tasks" not in p.parts)
    out = []
    for i, rel in enumerate(files):
        for how in ("delete", "half", "random", "json"):
            d = world / f"damaged-{name}" / f"{i}-{how}"
            if not d.exists():
                shutil.copytree(src, d)
            f = d / rel
            if how == "delete":
                f.unlink()
            elif how == "half":
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
            elif how == "random":
                f.write_bytes(bytes(rng.randrange(256) for _ in range(max(8, f.stat().st_size // 4))))
            else:
                f.write_text(json.dumps(rng.choice([[], {}, 3, "x", {"version": 2}, {"method": None, "order": 5}])))
            out.append((f"{rel} {how}", d))
    return out


def test_cli_fuzz_never_tracebacks(world, monkeypatch, capsys):
    monkeypatch.setenv("LIFELONGREC_CACHE", str(world / "cache"))
    cases = _option_cases(world)
    for _what, d in _damaged_runs(world):
        cases += [
            ["predict", str(d), "--task", "T2", "i1", "i2"],
            ["predict", str(d), "--task", "T3", "--embed", "i1"],
            ["report", str(d), "--out", str(d.parent / "rep"), "--no-plots"],
            ["stream", "run", "--resume", str(d)],
        ]
    config = str(world / "synthetic.yaml")
    for _what, d in _damaged_runs(world, "pre"):
        out = str(d.parent / f"from-{d.name}")
        cases.append(["stream", "run", "--config", config, "--order", "T1", "--init-from", str(d), "--out", out])
    failures = [f for f in (_outcome(c) for c in cases) if f is not None]
    with capsys.disabled():
        print(f"\ncli fuzz: {len(cases)} cases, {len(failures)} tracebacks")
    assert not failures, "\n".join(failures[:20])
    assert len(cases) > 400
