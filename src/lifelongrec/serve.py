"""`lifelongrec serve RUN_DIR`: one finished run served over HTTP (FastAPI + uvicorn, the `serve` extra).

The run is loaded once, in the app's lifespan: one base in memory and every task's adapter beside it,
each checked against the base's fingerprint as it loads (a mismatch stops the start-up with the file
named). Requests name their task; inference runs in worker threads (a Predictor is stateless and
thread-safe), never on the event loop. Item ids are the run's external ids, in and out; ids the run
does not know are listed in every answer, never dropped in silence.

Safety: binds 127.0.0.1 unless told otherwise; with `--api-key-env VAR` every route but /health and
/ready wants the header `X-API-Key` equal to that variable's value (compared in constant time);
artifacts are safetensors and JSON, never pickle.

(No `from __future__ import annotations` here: FastAPI reads the routes' annotations at run time, and
those name objects local to create_app.)
"""

import asyncio
import hmac
import os
import time
from collections import deque
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from .batching import MicroBatcher, Pending, QueueFull
from .errors import LifelongrecError
from .predict import UNIVERSAL, Predictor

MAX_HISTORY = 10_000  # items per history: far beyond any model's input window (the latest are read)
MAX_K = 1_000
MAX_BATCH = 256  # requests per batch call

History = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=512)]],
    Field(min_length=1, max_length=MAX_HISTORY, description="the user's item ids, oldest first"),
]


class Query(BaseModel):
    task: str = Field(min_length=1, max_length=64, description="a task of the run (GET /tasks)")
    history: History


class RecommendQuery(Query):
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = False
    candidates: list[str] | None = Field(
        None, min_length=1, max_length=100_000, description="rank only these item ids (default: the catalogue)"
    )


class ScoredItem(BaseModel):
    item: str
    score: float


class Recommendation(BaseModel):
    task: str
    items: list[ScoredItem]
    unknown_items: list[str]
    unknown_candidates: list[str] | None = None  # only when candidates were given


class Classification(BaseModel):
    task: str
    class_: str = Field(alias="class")
    probabilities: dict[str, float]
    unknown_items: list[str]


class Embedding(BaseModel):
    task: str
    vector: list[float]
    unknown_items: list[str]
    tasks: list[str] | None = None  # the universal representation: which tasks it joins, and how
    combine: str | None = None


class TaskInfo(BaseModel):
    name: str
    kind: str
    method: str
    classes: list[str] | None
    test_metrics: dict[str, Any]
    adapter_sha256: str | None
    adapter_bytes: int | None
    base_fingerprint: str | None


def _batch(model: type[BaseModel]) -> type[BaseModel]:
    return type(
        f"{model.__name__}Batch",
        (BaseModel,),
        {"__annotations__": {"requests": list[model]}, "requests": Field(min_length=1, max_length=MAX_BATCH)},  # type: ignore[valid-type]
    )


RecommendBatch, QueryBatch = _batch(RecommendQuery), _batch(Query)
OPS = {"recommend": ("next_item", "item_rec"), "classify": ("classify", "binary"), "embed": ("embed",)}


class Service:
    """The loaded run and what the routes do with it (outside FastAPI, so it is testable alone)."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.predictor = Predictor(run)
        for task in self.predictor.tasks:  # every adapter loads (and is checked) before the first request
            self.predictor.model(task)
        self.task_names = set(self.predictor.tasks)

    def reload(self) -> list[str]:
        """Serve the tasks added to the run since (Predictor.refresh: all new adapters load and fit the
        base, or nothing changes); the old ones answer throughout."""
        added = self.predictor.refresh()
        self.task_names = set(self.predictor.tasks)
        return added

    def check_task(self, task: str, *kinds: str) -> None:
        """404 for a task the run does not have; 422 for one of another kind than the route serves."""
        if task not in self.task_names and not (task == UNIVERSAL and "embed" in kinds):
            raise HTTPException(404, f"unknown task '{task}' (this run has: {', '.join(sorted(self.task_names))})")
        if task in self.task_names and kinds and "embed" not in kinds:
            kind = self.predictor.config(task)["kind"]
            if kind not in kinds:
                use = "/classify" if kind in ("classify", "binary") else "/recommend"
                raise HTTPException(422, f"task '{task}' is a {kind} task: use {use}")

    def tasks(self) -> list[TaskInfo]:
        out = []
        for t in self.predictor.tasks:
            c = self.predictor.config(t)
            out.append(
                TaskInfo(
                    name=t,
                    kind=c["kind"],
                    method=str(c["method"]),
                    classes=c.get("classes"),
                    test_metrics={k: v for k, v in (c.get("metrics") or {}).items() if k != "ci95"},
                    adapter_sha256=c.get("sha256"),
                    adapter_bytes=c.get("bytes"),
                    base_fingerprint=c.get("base_fingerprint"),
                )
            )
        return out

    def recommend(self, q: RecommendQuery) -> dict:
        self.check_task(q.task, "next_item", "item_rec")
        return self.predictor.recommend(q.task, q.history, q.k, q.exclude_seen, candidates=q.candidates)

    def classify(self, q: Query) -> dict:
        self.check_task(q.task, "classify", "binary")
        return self.predictor.classify(q.task, q.history)

    def embed(self, q: Query) -> dict:
        self.check_task(q.task, "embed")
        return self.predictor.embed(q.task, q.history)


class Batching(BaseModel):
    """Dynamic micro-batching (batching.py); max_batch 1 turns it off (each request alone)."""

    max_batch: int = Field(64, ge=1, le=4096)
    max_wait_ms: float = Field(5.0, ge=0.0, le=1000.0)
    queue_size: int = Field(1024, ge=1)
    # Requests for different tasks share one forward pass where the method allows it (batching.py).
    shared_pass: bool = True


def create_app(run: str | Path | Service, api_key: str | None = None, batching: Batching | None = None) -> FastAPI:
    """The app for a run folder (loaded in the lifespan) or an already loaded Service (the CLI loads
    it first, so that a bad artifact is a one-line error, not a traceback from the server)."""
    batching = batching or Batching.model_validate({})
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        svc = run if isinstance(run, Service) else await run_in_threadpool(Service, Path(run))
        state["service"] = svc
        if batching.max_batch > 1:
            state["batcher"] = MicroBatcher(
                svc.predictor, batching.max_batch, batching.max_wait_ms, batching.queue_size, batching.shared_pass
            )
            state["batcher"].start()
        yield
        if "batcher" in state:
            await state["batcher"].stop()
        state.clear()

    app = FastAPI(
        title="lifelongrec",
        summary="Every task of one continual-learning run, served from one base",
        lifespan=lifespan,
    )
    header = APIKeyHeader(name="X-API-Key", auto_error=False)
    # The server's own time per answered request (receipt to response, seconds), the last 100,000:
    # /stats gives its percentiles, which a load test can set beside the client's.
    timings: deque[float] = deque(maxlen=100_000)

    @app.middleware("http")
    async def timed(request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        if request.url.path not in ("/stats", "/health", "/ready"):
            timings.append(time.perf_counter() - t0)
        return response

    def authorised(key: Annotated[str | None, Depends(header)]) -> None:
        if api_key is not None and not (key and hmac.compare_digest(key.encode(), api_key.encode())):
            raise HTTPException(401, "missing or wrong X-API-Key", headers={"WWW-Authenticate": "APIKey"})

    def service() -> Service:
        if "service" not in state:
            raise HTTPException(503, "the run is still loading", headers={"Retry-After": "1"})
        return state["service"]

    async def answer(op: str, q: Query) -> dict:
        svc = service()
        svc.check_task(q.task, *OPS[op])
        extra = q.model_dump(include={"k", "exclude_seen", "candidates"}) if isinstance(q, RecommendQuery) else {}
        try:
            batcher: MicroBatcher | None = state.get("batcher")
            if batcher is None:
                return await run_in_threadpool(getattr(svc, op), q)
            return await batcher.submit(Pending(op, q.task, q.history, **extra))
        except QueueFull:
            raise HTTPException(429, "too many requests queued; retry shortly", headers={"Retry-After": "1"}) from None
        except LifelongrecError as e:  # the request's fault: an empty or wholly unknown history, ...
            raise HTTPException(422, str(e)) from None

    async def answer_all(op: str, queries: list) -> list[dict]:
        """A batch is answered whole or refused whole, naming the first request at fault."""
        results = await asyncio.gather(*(answer(op, q) for q in queries), return_exceptions=True)
        for i, r in enumerate(results):
            if isinstance(r, HTTPException):
                raise HTTPException(r.status_code, f"request {i}: {r.detail}", headers=r.headers)
            if isinstance(r, BaseException):
                raise r
        return cast(list[dict], results)

    Svc = Annotated[Service, Depends(service)]
    auth = [Depends(authorised)]

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> dict:
        svc = service()
        return {"status": "ready", "run": str(svc.run), "tasks": len(svc.task_names)}

    @app.get("/tasks", dependencies=auth)
    async def tasks(svc: Svc) -> list[TaskInfo]:
        return svc.tasks()

    @app.post("/reload", dependencies=auth)
    async def reload(svc: Svc) -> dict:
        """Serve the tasks added to the run since the start (`lifelongrec task add`); no restart."""
        try:
            added = await run_in_threadpool(svc.reload)
        except LifelongrecError as e:
            raise HTTPException(409, f"reload refused, still serving {sorted(svc.task_names)}: {e}") from None
        return {"added": added, "tasks": sorted(svc.task_names)}

    @app.get("/stats", dependencies=auth)
    async def stats() -> dict:
        """Micro-batching so far: requests answered through it and forward passes run."""
        b: MicroBatcher | None = state.get("batcher")
        out: dict[str, Any] = {
            "batching": b is not None,
            "requests": b.requests if b else 0,
            "batches": b.batches if b else 0,
        }
        if timings:
            ms = sorted(t * 1000 for t in timings)
            out["server_ms"] = {f"p{q}": round(ms[min(len(ms) - 1, int(len(ms) * q / 100))], 2) for q in (50, 95, 99)}
            out["server_ms"]["answered"] = len(ms)
        return out

    @app.post("/stats/reset", dependencies=auth)
    async def stats_reset() -> dict:
        timings.clear()
        return {"reset": True}

    @app.post("/recommend", dependencies=auth, response_model=Recommendation, response_model_exclude_none=True)
    async def recommend(q: RecommendQuery) -> Any:
        return await answer("recommend", q)

    @app.post("/classify", dependencies=auth, response_model=Classification, response_model_by_alias=True)
    async def classify(q: Query) -> Any:
        return await answer("classify", q)

    @app.post("/embed", dependencies=auth, response_model=Embedding, response_model_exclude_none=True)
    async def embed(q: Query) -> Any:
        return await answer("embed", q)

    @app.post(
        "/recommend/batch", dependencies=auth, response_model=list[Recommendation], response_model_exclude_none=True
    )
    async def recommend_batch(b: RecommendBatch) -> Any:  # type: ignore[valid-type]
        return await answer_all("recommend", b.requests)  # type: ignore[attr-defined]

    @app.post("/classify/batch", dependencies=auth, response_model=list[Classification], response_model_by_alias=True)
    async def classify_batch(b: QueryBatch) -> Any:  # type: ignore[valid-type]
        return await answer_all("classify", b.requests)  # type: ignore[attr-defined]

    @app.post("/embed/batch", dependencies=auth, response_model=list[Embedding], response_model_exclude_none=True)
    async def embed_batch(b: QueryBatch) -> Any:  # type: ignore[valid-type]
        return await answer_all("embed", b.requests)  # type: ignore[attr-defined]

    return app


def api_key_from_env(var: str | None) -> str | None:
    """The API key held by environment variable `var` (None: no key asked for)."""
    if var is None:
        return None
    key = os.environ.get(var)
    if not key:
        raise LifelongrecError(f"--api-key-env {var}: the environment variable {var} is not set or empty")
    return key
