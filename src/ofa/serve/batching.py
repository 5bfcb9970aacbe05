"""Dynamic batching: requests for the same task wait briefly for companions and run together.

A model call on 8 images costs far less than 8 calls on one (the weights are read once, the
matrix products are wider), so under concurrent load batching multiplies throughput for a
small, bounded price in latency (``max_wait_s``). Each task has its own bounded queue and a
collector coroutine: it takes the first waiting request, gathers more until the batch is
full or the wait is over, and hands the batch to a single worker thread. Torch therefore
never runs on the event loop (which keeps accepting, parsing and answering requests), and
batches never run concurrently with each other (they would only fight over the same cores
or GPU). While one batch runs, the next one accumulates, so a busy server batches more.

Requests in one batch may carry different options (e.g. two VQA answer lists); the batch is
split into groups of equal options and each group is one model call. The batcher knows
nothing about OFA: it calls ``run(task, options, payloads)`` in the worker thread, which
returns one result or exception per payload.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("ofa.serve")

RunFn = Callable[[str, dict, list[Any]], Sequence[Any]]
BatchHook = Callable[[str, int, float], None]


class QueueFullError(Exception):
    """The task's queue is full; ``retry_after`` (seconds) estimates when it has room."""

    def __init__(self, task: str, retry_after: int) -> None:
        super().__init__(f"the {task} queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class ShuttingDownError(Exception):
    """The server is stopping and takes no new work."""


@dataclass
class Delivery:
    """What a request gets back: its result (or exception), the size of the model call it
    was part of, and how long it waited before that call started."""

    result: Any
    batch_size: int
    queue_s: float


@dataclass
class _Job:
    options: dict
    key: str
    payload: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


def _options_key(options: dict) -> str:
    return json.dumps(options, sort_keys=True, default=repr)


class DynamicBatcher:
    """Per-task bounded queues feeding one worker thread; see the module docstring."""

    def __init__(self, tasks: Iterable[str], run: RunFn, *, max_batch_size: int = 8,
                 max_wait_s: float = 0.01, queue_size: int = 64,
                 on_batch: BatchHook | None = None) -> None:
        self.tasks = tuple(tasks)
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self._run = run
        self._on_batch = on_batch
        self._queues: dict[str, asyncio.Queue[_Job]] = {}
        self._collectors: list[asyncio.Task] = []
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._running = 0  # requests inside a model call right now
        self._batch_s = 0.1  # moving average of one model call, for Retry-After

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Create the queues and collectors (inside the server's event loop)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ofa-model")
        self._queues = {t: asyncio.Queue(self.queue_size) for t in self.tasks}
        self._collectors = [asyncio.create_task(self._collect(t), name=f"ofa-batcher-{t}")
                            for t in self.tasks]

    async def stop(self) -> None:
        """Refuse new work, fail what is still queued, let the running batch finish."""
        self._closing = True
        for task in self._collectors:
            task.cancel()
        await asyncio.gather(*self._collectors, return_exceptions=True)
        for queue in self._queues.values():
            while not queue.empty():
                job = queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(ShuttingDownError("the server is shutting down"))
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True)

    # ------------------------------------------------------------------ requests
    async def submit(self, task: str, options: dict, payload: Any) -> Delivery:
        """Queue one request and wait for its result. Cancelling the caller (a timeout)
        withdraws the request if its batch has not started."""
        if self._closing or not self._queues:
            raise ShuttingDownError("the server is shutting down")
        loop = asyncio.get_running_loop()
        job = _Job(options, _options_key(options), payload, loop.create_future())
        try:
            self._queues[task].put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFullError(task, self.retry_after(task)) from None
        return await job.future

    def queue_depth(self, task: str | None = None) -> int:
        """Requests waiting (not yet in a running batch) for ``task`` or all tasks."""
        if task is not None:
            queue = self._queues.get(task)
            return queue.qsize() if queue is not None else 0
        return sum(q.qsize() for q in self._queues.values())

    @property
    def in_flight(self) -> int:
        return self._running

    def retry_after(self, task: str) -> int:
        """Seconds until the queue has likely drained: batches ahead x time per batch."""
        batches = math.ceil((self.queue_depth(task) + 1) / self.max_batch_size)
        return max(1, min(60, math.ceil(batches * self._batch_s)))

    # ------------------------------------------------------------------ batching
    async def _collect(self, task: str) -> None:
        queue = self._queues[task]
        loop = asyncio.get_running_loop()
        while True:
            first = await queue.get()
            if first.future.done():  # timed out while waiting
                continue
            batch = [first]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                if not job.future.done():
                    batch.append(job)
            try:
                await self._run_batch(task, batch)
            except Exception as e:  # never let one batch kill the collector of its task
                log.exception("batching %s requests failed", task)
                for job in batch:
                    if not job.future.done():
                        job.future.set_result(Delivery(e, len(batch), 0.0))

    async def _run_batch(self, task: str, batch: list[_Job]) -> None:
        groups: dict[str, list[_Job]] = {}
        for job in batch:
            groups.setdefault(job.key, []).append(job)
        loop = asyncio.get_running_loop()
        for jobs in groups.values():
            jobs = [j for j in jobs if not j.future.done()]
            if not jobs:
                continue
            started = time.perf_counter()
            self._running = len(jobs)
            try:
                results = await loop.run_in_executor(
                    self._executor, self._run, task, jobs[0].options, [j.payload for j in jobs])
                if len(results) != len(jobs):
                    raise RuntimeError(f"run returned {len(results)} results for {len(jobs)}")
            except asyncio.CancelledError:  # stop() while running: nobody will deliver these
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(ShuttingDownError("the server is shutting down"))
                raise
            except Exception as e:  # a bug or an exhausted device: every request learns it
                log.exception("batch of %d %s requests failed", len(jobs), task)
                results = [e] * len(jobs)
            finally:
                self._running = 0
            elapsed = time.perf_counter() - started
            self._batch_s = 0.8 * self._batch_s + 0.2 * elapsed
            if self._on_batch is not None:
                self._on_batch(task, len(jobs), elapsed)
            for job, result in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(Delivery(result, len(jobs), started - job.enqueued))
