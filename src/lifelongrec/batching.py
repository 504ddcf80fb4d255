"""Dynamic micro-batching for the server: requests wait in a bounded queue; a worker takes up to
`max_batch` of them (waiting at most `max_wait_ms` after the first for more), groups those that can
share one forward pass (the same task and operation, and for recommend the same exclude_seen and no
candidate list), and answers each group with one batched Predictor call in a worker thread, so the
event loop never runs inference. Groups of different tasks share one forward pass too where the method
allows it (Predictor.pass_key: tasks that read the base with no view of their own, like FineSmax's),
each then applying only its own head. A full queue is refused at once (the caller answers 429).

Each request is checked on its own before it joins a group (an empty or wholly unknown history fails
that request alone, not its neighbours).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fastapi.concurrency import run_in_threadpool

from .errors import LifelongrecError
from .predict import Inputs, Predictor


class QueueFull(Exception):
    """The batcher holds `queue_size` requests already."""


@dataclass
class Pending:
    op: str  # recommend, classify, embed
    task: str
    history: list[str]
    k: int = 10
    exclude_seen: bool = False
    candidates: list[str] | None = None
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def key(self) -> tuple:
        """Requests with equal keys share one forward pass (recommend: the largest k, cut per request)."""
        if self.op == "recommend":
            return (self.op, self.task, self.exclude_seen, id(self) if self.candidates is not None else None)
        return (self.op, self.task)


class MicroBatcher:
    def __init__(
        self,
        predictor: Predictor,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        queue_size: int = 1024,
        shared_pass: bool = True,
    ):
        self.predictor, self.max_batch, self.max_wait = predictor, max_batch, max_wait_ms / 1000.0
        self.shared_pass = shared_pass
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=queue_size)
        self.batches = 0  # forward passes run (for the load test's report)
        self.requests = 0
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def submit(self, p: Pending) -> Any:
        self.predictor.known(p.history)  # raises for this request's own fault, before it joins a group
        try:
            self.queue.put_nowait(p)
        except asyncio.QueueFull:
            raise QueueFull from None
        return await p.future

    async def _collect(self) -> list[Pending]:
        first = await self.queue.get()
        got = [first]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(got) < self.max_batch:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                got.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return got

    async def _run(self) -> None:
        while True:
            got = await self._collect()
            groups: dict[tuple, list[Pending]] = defaultdict(list)
            for p in got:
                groups[p.key()].append(p)
            passes: dict[tuple, list[list[Pending]]] = defaultdict(list)  # groups sharing one forward pass
            for key, g in groups.items():
                shared = self._pass_key(g[0].task) if self.shared_pass else None
                passes[("shared", shared) if shared is not None else ("own", key)].append(g)
            # One pass at a time (two side by side in threads measured slower on 2 cores: they
            # compete with the event loop for the GIL, bench/RESULTS.md); requests arriving meanwhile
            # wait in the queue and make the next micro-batch larger.
            for gs in passes.values():
                await self._run_pass(gs)

    def _pass_key(self, task: str) -> tuple | None:
        try:
            return self.predictor.pass_key(task)
        except LifelongrecError:  # an unknown task: its group fails on its own below
            return None

    async def _run_pass(self, groups: list[list[Pending]]) -> None:
        self.batches += 1
        self.requests += sum(len(g) for g in groups)
        try:
            results = await run_in_threadpool(self._answer_pass, groups)
        except Exception as e:  # the shared forward pass itself failed: every member's fault
            results = [e] * len(groups)
        for group, answers in zip(groups, results):
            for i, p in enumerate(group):
                if p.future.done():  # a caller that went away leaves a cancelled future
                    continue
                if isinstance(answers, Exception):  # the group's fault (an unknown task, a wrong kind)
                    p.future.set_exception(answers)
                else:
                    p.future.set_result(answers[i])

    def _answer_pass(self, groups: list[list[Pending]]) -> list[list[dict] | Exception]:
        """Each group's answers (or its error), from one forward pass when there are several groups."""
        given: list[Inputs | None] = [None] * len(groups)
        if len(groups) > 1:
            ids, unknown, vectors = self.predictor.inputs(groups[0][0].task, [p.history for g in groups for p in g])
            at = 0
            for j, g in enumerate(groups):
                given[j] = (ids[at : at + len(g)], unknown[at : at + len(g)], vectors[at : at + len(g)])
                at += len(g)
        out: list[list[dict] | Exception] = []
        for g, inputs in zip(groups, given):
            try:
                out.append(self._answer(g, inputs))
            except Exception as e:
                out.append(e)
        return out

    def _answer(self, group: list[Pending], given: Inputs | None = None) -> list[dict]:
        first, pr, hists = group[0], self.predictor, [p.history for p in group]
        if first.op == "classify":
            return pr.classify_many(first.task, hists, given)
        if first.op == "embed":
            return pr.embed_many(first.task, hists, given)
        k = max(p.k for p in group)
        out = pr.recommend_many(first.task, hists, k, first.exclude_seen, first.candidates, given)
        for p, o in zip(group, out):
            o["items"] = o["items"][: p.k]
        return out
