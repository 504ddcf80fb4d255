"""`lifelongrec bench`, `report` and `predict`: comparing methods, reading runs, answering with one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .cli_options import ConfigOpt, OutOpt, SetOpt
from .errors import LifelongrecError


def bench_cmd(
    config: ConfigOpt = "ml1m",
    methods: Annotated[str | None, typer.Option(help="comma-separated methods (default: every built-in one)")] = None,
    seeds: Annotated[int, typer.Option(min=1, max=100, help="seeds per method (T1 pretrained once per seed)")] = 3,
    quick: Annotated[bool, typer.Option("--quick", help="the ML-100K stream with 2 seeds: a first look")] = False,
    set_: SetOpt = None,
    out: OutOpt = None,
    only_seed: Annotated[
        int | None,
        typer.Option(help="learn only this seed's runs, no report (spread seeds over processes sharing --out)"),
    ] = None,
) -> None:
    """Every method on one stream with the same splits, seeds and budgets; one Table-2 report with
    mean ± std over seeds, reference rows and paired tests. Rerun the same command to resume."""
    from .bench import render, run_bench

    if quick:
        config, seeds = "ml100k", min(seeds, 2)
    name = Path(config).stem if Path(config).suffix else config
    out = out or Path("runs") / "bench" / name
    chosen = split_methods(methods) if methods else None
    result = run_bench(config, out, chosen, seeds, list(set_ or []), only_seed)
    from . import distributed

    if not distributed.is_main():  # under torchrun, rank 0 reports
        return
    if result is None:
        typer.echo(f"seed {only_seed} learned in {out}; the same command without --only-seed writes the report")
        return
    typer.echo(render(result))
    typer.echo(
        f"\ntraining loops {result['compute_seconds'] / 3600:.1f} h in all; this call {result['wall_seconds']:.0f} s; "
        f"written to {out / 'report.md'} and {out / 'bench.json'}"
    )


def report_cmd(
    runs: Annotated[list[Path], typer.Argument(help="stream run folders")],
    out: OutOpt = None,
    plots: Annotated[bool, typer.Option(help="write PNG heatmaps")] = True,
    floors: Annotated[
        bool,
        typer.Option(help="also test each task against its floor (most popular items, majority class); reads the data"),
    ] = False,
) -> None:
    """A Conure Table-2 style table (and heatmaps) from stream runs; reads only the runs' files unless
    --floors."""
    from .report import report

    out = out or runs[0].parent / "report"
    typer.echo(report(runs, out, plots))
    if floors:
        from .floors import floors_report

        for run in runs:
            typer.echo("\n" + floors_report(run, out / run.name))
    typer.echo(f"\nwritten to {out / 'report.md'}")


def predict_cmd(
    run: Annotated[Path, typer.Argument(help="a stream run folder")],
    items: Annotated[
        list[str] | None,
        typer.Argument(help="the history: item ids, oldest first, one argument each (quote an id with spaces)"),
    ] = None,
    task: Annotated[
        str, typer.Option(help="task name, e.g. T2; with --embed, `universal` for a method that has one (PCL)")
    ] = ...,  # type: ignore[assignment]
    history: Annotated[
        list[str] | None, typer.Option(help="one item id of the history (repeatable; the same as ITEMS)")
    ] = None,
    histories: Annotated[
        Path | None, typer.Option(help="a UTF-8 file with one history per line, ids separated by tabs")
    ] = None,
    k: Annotated[int, typer.Option(min=1, max=100_000, help="how many items to recommend")] = 10,
    exclude_seen: Annotated[bool, typer.Option(help="never recommend an item of the history")] = False,
    embed: Annotated[bool, typer.Option(help="print the user vector instead")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto")] = "cpu",
) -> None:
    """Top-k items (item tasks), a class with probabilities (profile tasks) or the user vector, as JSON lines."""
    from .predict import Predictor

    given = [*(items or []), *(history or [])]
    if bool(given) == (histories is not None):
        raise LifelongrecError("give the history either as item ids (predict RUN ID ID ...) or with --histories FILE")
    p = Predictor(run, device=device)
    if histories is not None:
        if not histories.is_file():
            raise LifelongrecError(f"--histories {histories}: file not found")
        try:
            text = histories.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            line = histories.read_bytes()[: e.start].count(b"\n") + 1
            raise LifelongrecError(f"--histories {histories}: line {line}: not UTF-8 text (byte {e.start})") from None
        lines = [ln.rstrip("\r\n").split("\t") for ln in text.splitlines()]
    else:
        lines = [given]
    for n, ids in enumerate(lines, start=1):
        ids = [i for i in ids if i != ""]
        try:
            out = p.embed(task, ids) if embed else p.predict(task, ids, k, exclude_seen)
        except LifelongrecError as e:
            where = f"{histories}: line {n}: " if histories is not None else ""
            raise LifelongrecError(f"{where}{e}") from None
        typer.echo(json.dumps(out))


def split_methods(text: str) -> list[str]:
    """`--methods a,b:k=v,k2=v2,c` -> ["a", "b:k=v,k2=v2", "c"]: a comma starts a new method unless
    what follows is another `key=value` of the variant before it."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if out and "=" in part and ":" not in part and ":" in out[-1]:
            out[-1] += "," + part
        else:
            out.append(part)
    return out
