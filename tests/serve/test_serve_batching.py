"""Dynamic batching: the batcher alone (with a recording fake model) and through HTTP."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ofa.serve.batching import DynamicBatcher, QueueFullError, ShuttingDownError


class Recorder:
    """A fake ``run``: records the payloads of each call, answers ``payload * 10``."""

    def __init__(self, block: threading.Event | None = None, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict, list]] = []
        self.threads: set[str] = set()
        self.block = block
        self.fail = fail

    def __call__(self, task, options, payloads):
        self.threads.add(threading.current_thread().name)
        self.calls.append((task, options, list(payloads)))
        if self.block is not None:
            self.block.wait(10)
        if self.fail:
            raise RuntimeError("model exploded")
        return [p * 10 for p in payloads]


async def _with_batcher(run, coro_fn, **kwargs):
    batcher = DynamicBatcher(["caption", "vqa"], run, **kwargs)
    await batcher.start()
    try:
        return await coro_fn(batcher)
    finally:
        await batcher.stop()


def test_concurrent_requests_share_one_call_in_the_worker_thread():
    run = Recorder()

    async def scenario(b):
        return await asyncio.gather(*(b.submit("caption", {}, i) for i in range(5)))

    out = asyncio.run(_with_batcher(run, scenario, max_batch_size=8, max_wait_s=0.2))
    assert [d.result for d in out] == [0, 10, 20, 30, 40]  # each gets its own answer
    assert [d.batch_size for d in out] == [5] * 5
    assert [len(p) for _, _, p in run.calls] == [5]
    assert run.threads and all(t.startswith("ofa-model") for t in run.threads)


def test_batches_are_capped_at_the_max_size():
    run = Recorder()

    async def scenario(b):
        return await asyncio.gather(*(b.submit("caption", {}, i) for i in range(20)))

    out = asyncio.run(_with_batcher(run, scenario, max_batch_size=8, max_wait_s=0.05))
    assert [len(p) for _, _, p in run.calls] == [8, 8, 4]
    assert sorted(d.result for d in out) == [i * 10 for i in range(20)]


def test_max_wait_bounds_the_wait_and_size_one_turns_batching_off():
    async def timed(b):
        start = time.perf_counter()
        await b.submit("caption", {}, 1)
        return time.perf_counter() - start

    waited = asyncio.run(_with_batcher(Recorder(), timed, max_batch_size=8, max_wait_s=0.3))
    assert 0.25 < waited < 2.0  # waited for companions, then ran alone
    run = Recorder()
    waited = asyncio.run(_with_batcher(run, timed, max_batch_size=1, max_wait_s=5.0))
    assert waited < 1.0  # a full batch of one never waits

    async def many(b):
        return await asyncio.gather(*(b.submit("caption", {}, i) for i in range(4)))

    asyncio.run(_with_batcher(run, many, max_batch_size=1, max_wait_s=0.0))
    assert [len(p) for _, _, p in run.calls[1:]] == [1, 1, 1, 1]


def test_tasks_and_options_never_mix_in_one_call():
    run = Recorder()

    async def scenario(b):
        jobs = [b.submit("caption", {"beam": 1}, 1), b.submit("caption", {"beam": 2}, 2),
                b.submit("caption", {"beam": 1}, 3), b.submit("vqa", {"beam": 1}, 4)]
        return await asyncio.gather(*jobs)

    out = asyncio.run(_with_batcher(run, scenario, max_batch_size=8, max_wait_s=0.1))
    assert [d.result for d in out] == [10, 20, 30, 40]
    calls = sorted((task, opts["beam"], payloads) for task, opts, payloads in run.calls)
    assert calls == [("caption", 1, [1, 3]), ("caption", 2, [2]), ("vqa", 1, [4])]
    assert [d.batch_size for d in out] == [2, 1, 2, 1]


def test_a_failing_model_reaches_every_request_of_the_batch():
    async def scenario(b):
        return await asyncio.gather(*(b.submit("caption", {}, i) for i in range(3)))

    out = asyncio.run(_with_batcher(Recorder(fail=True), scenario, max_wait_s=0.05))
    assert all(isinstance(d.result, RuntimeError) for d in out)


def test_full_queue_refuses_at_once_with_a_retry_estimate():
    gate = threading.Event()
    run = Recorder(block=gate)

    async def scenario(b):
        first = asyncio.create_task(b.submit("caption", {}, 0))
        while not run.calls:  # the first request is inside the model
            await asyncio.sleep(0.01)
        queued = [asyncio.create_task(b.submit("caption", {}, i)) for i in (1, 2)]
        await asyncio.sleep(0.05)
        assert b.queue_depth("caption") == 2 and b.queue_depth() == 2
        with pytest.raises(QueueFullError) as refused:
            await b.submit("caption", {}, 3)
        assert refused.value.retry_after >= 1
        other = asyncio.create_task(b.submit("vqa", {}, 9))  # its own queue: accepted
        await asyncio.sleep(0.05)
        assert not other.done()
        gate.set()
        return await asyncio.gather(first, *queued, other)

    out = asyncio.run(_with_batcher(run, scenario, max_batch_size=1, queue_size=2,
                                    max_wait_s=0.0))
    assert [d.result for d in out] == [0, 10, 20, 90]


def test_timed_out_requests_are_withdrawn_before_they_run():
    gate = threading.Event()
    run = Recorder(block=gate)

    async def scenario(b):
        first = asyncio.create_task(b.submit("caption", {}, 0))
        while not run.calls:
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.submit("caption", {}, 1), 0.1)
        gate.set()
        await first
        return await b.submit("caption", {}, 2)

    out = asyncio.run(_with_batcher(run, scenario, max_batch_size=1, max_wait_s=0.0))
    assert out.result == 20
    assert [p for _, _, p in run.calls] == [[0], [2]]  # 1 never ran


def test_stop_fails_what_is_still_queued():
    gate = threading.Event()
    run = Recorder(block=gate)

    async def scenario():
        b = DynamicBatcher(["caption"], run, max_batch_size=1, max_wait_s=0.0)
        await b.start()
        first = asyncio.create_task(b.submit("caption", {}, 0))
        while not run.calls:
            await asyncio.sleep(0.01)
        queued = asyncio.create_task(b.submit("caption", {}, 1))
        await asyncio.sleep(0.05)
        threading.Timer(0.2, gate.set).start()
        await b.stop()  # waits for the running call
        with pytest.raises(ShuttingDownError):
            await queued
        with pytest.raises(ShuttingDownError):
            await b.submit("caption", {}, 2)
        first.cancel()

    asyncio.run(scenario())
    assert [p for _, _, p in run.calls] == [[0]]


# ---------------------------------------------------------------------- over HTTP
async def _concurrent(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.post(url, json=b) for b in bodies))


def _samples(metrics_text: str, name: str) -> dict:
    for family in text_string_to_metric_families(metrics_text):
        if family.name == name:
            return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    raise AssertionError(f"{name} not in /metrics")


def test_concurrent_http_requests_run_as_one_batch(serve, demo_model, png_b64):
    from ofa.demo import DEMO_IMAGE

    alone = demo_model.caption(str(DEMO_IMAGE))["caption"]
    with serve(max_batch_size=8, max_wait_ms=400) as live:
        out = asyncio.run(_concurrent(f"{live.url}/v1/caption", [{"image": png_b64}] * 6))
        assert [r.status_code for r in out] == [200] * 6
        assert [r.json()["batch_size"] for r in out] == [6] * 6
        assert all(r.json()["caption"] == alone for r in out)  # batching changes no answer
        sizes = _samples(httpx.get(f"{live.url}/metrics").text, "ofa_batch_size")
        key = (("task", "caption"),)
        assert sizes[("ofa_batch_size_count", key)] == 1
        assert sizes[("ofa_batch_size_sum", key)] == 6


def test_batching_off_runs_requests_one_by_one(serve, png_b64):
    with serve(max_batch_size=1, max_wait_ms=400) as live:
        out = asyncio.run(_concurrent(f"{live.url}/v1/caption", [{"image": png_b64}] * 4))
        assert [r.json()["batch_size"] for r in out] == [1] * 4
        sizes = _samples(httpx.get(f"{live.url}/metrics").text, "ofa_batch_size")
        assert sizes[("ofa_batch_size_count", (("task", "caption"),))] == 4


def test_a_bad_request_does_not_sink_its_batch(serve, demo_model, demo_answers, png_b64):
    from ofa.demo import DEMO_IMAGE

    good = {"image": png_b64, "question": "what color is the triangle?"}
    bad = {"image": png_b64, "question": "\U0001f600" * 300}  # too long for the encoder
    other = {**good, "answers": ["red", "yellow"]}  # other options: its own model call
    with serve(max_batch_size=8, max_wait_ms=400) as live:
        out = asyncio.run(_concurrent(f"{live.url}/v1/vqa", [good, bad, good, other]))
    assert [r.status_code for r in out] == [200, 422, 200, 200]
    expected = demo_model.vqa(str(DEMO_IMAGE), good["question"], answers=demo_answers)
    assert out[0].json()["answer"] == out[2].json()["answer"] == expected["answer"]
    assert out[3].json()["answer"] in ("red", "yellow")
    assert out[3].json()["batch_size"] == 1
