"""`lifelongrec serve` and `lifelongrec task add`: a finished run in use, and a task added to it later."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from .errors import LifelongrecError

task_app = typer.Typer(no_args_is_help=True, help="Add a task to a finished run.")


def serve_cmd(
    run: Annotated[Path, typer.Argument(help="a stream run folder")],
    host: Annotated[str, typer.Option(help="the address to bind (0.0.0.0 exposes it to the network)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_key_env: Annotated[
        str | None, typer.Option(help="require header X-API-Key equal to this environment variable's value")
    ] = None,
    max_batch: Annotated[int, typer.Option(min=1, max=4096, help="micro-batch size; 1 turns batching off")] = 64,
    max_wait_ms: Annotated[float, typer.Option(min=0, max=1000, help="how long a micro-batch waits to fill")] = 5.0,
    queue_size: Annotated[int, typer.Option(min=1, help="requests held before answering 429")] = 1024,
    shared_pass: Annotated[
        bool, typer.Option(help="requests for different tasks share one forward pass where the method allows it")
    ] = True,
    keep_alive: Annotated[
        int, typer.Option(min=1, help="seconds an idle client connection stays open (uvicorn's default: 5)")
    ] = 30,
) -> None:
    """Serve every task of a run over HTTP (needs the `serve` extra); OpenAPI docs at /docs."""
    try:
        import uvicorn

        from .serve import Batching, Service, api_key_from_env, create_app
    except ImportError as e:
        raise LifelongrecError(f"serving needs the serve extra: pip install 'lifelongrec[serve]' ({e})") from None
    batching = Batching(max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size, shared_pass=shared_pass)
    key = api_key_from_env(api_key_env)
    service = Service(run)  # every adapter loads and is checked here, before the port opens
    typer.echo(f"serving {len(service.task_names)} tasks of {run} on http://{host}:{port} (docs: /docs)")
    # A client that reuses a pooled connection just as the server closes it for idleness sees a reset
    # (a race every HTTP/1.1 keep-alive has); a longer idle timeout than uvicorn's 5 s makes it rarer.
    uvicorn.run(
        create_app(service, key, batching), host=host, port=port, log_level="warning", timeout_keep_alive=keep_alive
    )


@task_app.command("add")
def task_add(
    run: Annotated[Path, typer.Argument(help="a finished stream run folder")],
    name: Annotated[str, typer.Option(help="the new task's name (letters, digits, _ and -)")],
    kind: Annotated[Literal["item_rec", "classify", "binary"], typer.Option(help="what the task predicts")],
    labels: Annotated[Path, typer.Option(help="the file: user id and label, or user id and item id")],
    format: Annotated[Literal["csv", "tsv", "parquet"], typer.Option(help="the file's format")] = "csv",
    user: Annotated[str, typer.Option(help="its user id column")] = "user_id",
    label: Annotated[str, typer.Option(help="its label column (classify, binary)")] = "label",
    item: Annotated[str, typer.Option(help="its item id column (item_rec)")] = "item_id",
    positive: Annotated[str | None, typer.Option(help="binary: the label value that is the positive class")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="a training setting of this task, e.g. lr=0.001 (repeatable)")
    ] = None,
) -> None:
    """Learn one new task from your own file on top of a finished run, with the run's method; the
    earlier tasks' outputs stay bit-identical. A running server picks it up with POST /reload."""
    from .adapters import read_run_json
    from .config import StreamConfig, TaskConfig, apply_overrides
    from .data.prepare import open_stream
    from .runner import add_task

    if not labels.is_file():
        raise LifelongrecError(f"--labels {labels}: file not found")
    # The task's training settings, parsed as every --set is (YAML values); `train.` is optional.
    train = apply_overrides({}, [kv.removeprefix("train.") for kv in set_ or []])
    spec: dict = {
        "name": name,
        "kind": kind,
        "labels": {"path": str(labels.resolve()), "format": format, "user": user, "label": label, "item": item},
        "train": train or None,
    }
    if kind != "item_rec":
        spec["label"] = {"field": label, "positive": positive}
    try:
        task = TaskConfig.model_validate(spec)
    except ValueError as e:
        raise LifelongrecError(f"task add: {e}") from None
    summary = add_task(run, task)
    cfg = StreamConfig.model_validate(read_run_json(run)["config"])
    notes = open_stream(cfg)[0].manifest["tasks"][name]
    i = summary["tasks"].index(name)
    test = {summary["metrics"][i]: summary["final"][i]}
    typer.echo(json.dumps({"task": name, "test": test, "data": notes, "run": str(run)}))
