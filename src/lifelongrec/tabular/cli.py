"""`lifelongrec tabular run`: MPT-Rec's tabular experiment from a config (configs/adult.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

tabular_app = typer.Typer(no_args_is_help=True, help="Tabular multi-task prediction (MPT-Rec's setting).")


@tabular_app.command("run")
def tabular_run(
    config: Annotated[str, typer.Option("--config", "-c", help="a tabular config (built-in: adult)")] = "adult",
    seeds: Annotated[int, typer.Option(help="seeds 0..N-1")] = 5,
    methods: Annotated[str | None, typer.Option(help="comma-separated subset of the methods")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a config field: a.b=c")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default runs/<name>)")] = None,
) -> None:
    """Stage 1 on the pre-training tasks, then the new task by every method; prints and writes the
    report (out/report.md, out/results.json). Rerunning continues from the checkpoints."""
    from ..fsutil import write_json_atomic, write_text_atomic
    from .config import load_tabular_config
    from .data import build_tabular
    from .experiment import NEW_TASK_METHODS, run_experiment
    from .report import references, render

    cfg = load_tabular_config(config, set_)
    chosen = methods.split(",") if methods else list(NEW_TASK_METHODS)
    unknown = [m for m in chosen if m not in NEW_TASK_METHODS]
    if unknown:
        raise typer.BadParameter(f"unknown methods {unknown} (known: {', '.join(NEW_TASK_METHODS)})")
    out = out or Path("runs") / cfg.name
    data = build_tabular(cfg)
    result = run_experiment(cfg, data, list(range(seeds)), out, chosen)
    refs = references(data, [t.name for t in cfg.tasks])
    parts = []
    if result.get("unknown"):
        parts.append(f"Rows with a value never seen in training (mapped to the unknown bucket): {result['unknown']}\n")
    for t in cfg.new_tasks:
        parts.append(render(result, refs, t, cfg.pretrain))
    text = "\n\n".join(parts)
    write_json_atomic(out / "results.json", {**result, "references": refs})
    write_text_atomic(out / "report.md", text + "\n")
    typer.echo(text)
