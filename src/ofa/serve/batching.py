"""Dynamic batching: requests for the same task wait briefly for companions and run together.

A model call on 8 images costs far less than 8 calls on one (the weights are read once, the
matrix products are wider), so under concurrent load batching multiplies throughput for a
small, bounded price in latency (``max_wait_s``). Each task has its own bounded queue and a
collector coroutine: it takes the first waiting request, gathers more until the batch is
full or the wait is over, and hands the batch to a worker thread. Torch therefore never
runs on the event loop (which keeps accepting, parsing and answering requests), and batches
never run at the same time as each other (they would only fight over the same cores or
GPU). While one batch runs, the next one accumulates, so a busy server batches more.

Requests in one batch may carry different options (e.g. two VQA answer lists); the batch is
split into groups of equal options and each group is one model call. The batcher knows
nothing about OFA: it calls ``run(task, options, payloads)`` in a worker thread, which
returns one result or exception per payload.

Long calls (thousands of candidates) must neither starve other tasks nor outlive their
clients. Each task's batch waits for the model in its own worker thread, and the calls take
turns (:mod:`.turns`): long work calls :func:`checkpoint` between chunks, which hands the
model to a waiting call that has used it less (a new request goes first), and raises
:class:`Abandoned` once no request of the call is waited for any more (all timed out, or
the server is stopping), so the rest of that call is dropped instead of holding the model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .turns import Call, Turns

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


class Abandoned(Exception):
    """Raised by :func:`checkpoint`: nobody waits for this call's results any more."""


_current = threading.local()  # the checkpoint of the call this worker thread runs


def checkpoint() -> None:
    """Called by long work between chunks, in the worker thread: lets the batches waiting
    for the model run first, and raises :class:`Abandoned` if the call's requests have all
    timed out or the server is stopping. Outside a batcher's call it does nothing."""
    check = getattr(_current, "check", None)
    if check is not None:
        check()


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

    @property
    def abandoned(self) -> bool:
        # Read from the worker thread: ``done()`` only compares a state field, and a stale
        # answer just means one more chunk is run or checked.
        return self.future.done()


@dataclass
class _Ran:
    """What one model call in a worker thread gives back to the event loop."""

    jobs: list[_Job]  # those still waited for when the call started
    results: list[Any]
    started: float
    seconds: float  # model time: the turns it gave to other calls not counted


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
        self._turns = Turns()
        self._closing = False
        self._running = 0  # requests inside a model call (running or waiting for its turn)
        self._batch_s = 0.1  # moving average of one model call, for Retry-After

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Create the queues and collectors (inside the server's event loop)."""
        # one thread per task: each collector has at most one call out, and calls that wait
        # for their turn must not wait for a thread as well
        self._executor = ThreadPoolExecutor(max_workers=len(self.tasks),
                                            thread_name_prefix="ofa-model")
        self._queues = {t: asyncio.Queue(self.queue_size) for t in self.tasks}
        self._collectors = [asyncio.create_task(self._collect(t), name=f"ofa-batcher-{t}")
                            for t in self.tasks]

    async def stop(self) -> None:
        """Refuse new work, fail what is still queued, and drop running calls at their next
        checkpoint (by now the server has answered or timed out every request it holds)."""
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
            self._running += len(jobs)
            try:
                ran = await loop.run_in_executor(self._executor, self._call, task, jobs)
            except asyncio.CancelledError:  # stop() while running: nobody will deliver these
                self._fail(jobs, ShuttingDownError("the server is shutting down"))
                raise
            finally:
                self._running -= len(jobs)
            if ran is None:  # abandoned: its requests got their 504, or the server stops
                if self._closing:
                    self._fail(jobs, ShuttingDownError("the server is shutting down"))
                continue
            self._batch_s = 0.8 * self._batch_s + 0.2 * ran.seconds
            if self._on_batch is not None:
                self._on_batch(task, len(ran.jobs), ran.seconds)
            for job, result in zip(ran.jobs, ran.results, strict=True):
                if not job.future.done():
                    job.future.set_result(Delivery(result, len(ran.jobs),
                                                   ran.started - job.enqueued))

    def _call(self, task: str, jobs: list[_Job]) -> _Ran | None:
        """In a worker thread: wait for the model's turn, then run the requests still waited
        for. None when there are none left, before or during the call."""
        with Call(self._turns) as call:
            jobs = [j for j in jobs if not j.abandoned]
            if self._closing or not jobs:
                return None
            started = time.perf_counter()
            _current.check = lambda: self._check(call, jobs)
            try:
                results = list(self._run(task, jobs[0].options, [j.payload for j in jobs]))
                if len(results) != len(jobs):
                    raise RuntimeError(f"run returned {len(results)} results for {len(jobs)}")
            except Abandoned:
                log.info("dropped the rest of a %s call (%d request(s)): %s", task, len(jobs),
                         "the server is stopping" if self._closing else "they all timed out")
                return None
            except Exception as e:  # a bug or an exhausted device: every request learns it
                log.exception("batch of %d %s requests failed", len(jobs), task)
                results = [e] * len(jobs)
            finally:
                _current.check = None
        # the model time it used, without the turns it gave to others
        return _Ran(jobs, results, started, call.used_s)

    def _check(self, call: Call, jobs: list[_Job]) -> None:
        """The checkpoint of a running call (see :func:`checkpoint`)."""
        self._raise_if_abandoned(jobs)
        if call.checkpoint():  # others ran meanwhile, long enough for ours to time out
            self._raise_if_abandoned(jobs)

    def _raise_if_abandoned(self, jobs: list[_Job]) -> None:
        if self._closing or all(j.abandoned for j in jobs):
            raise Abandoned

    @staticmethod
    def _fail(jobs: list[_Job], error: Exception) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)
