"""Options shared by the command modules (cli.py, cli_results.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    str,
    typer.Option(
        "--config", "-c", help="YAML file or built-in name (ml1m, ml1m_paper, ml1m_quick, ml1m_loo, ml100k; configs/)"
    ),
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a config field: a.b=c (repeatable)")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="output folder (default: the cache)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
