"""Long model calls neither starve short ones nor outlive their clients: calls take turns at
checkpoints (decoding steps, candidate chunks), a call whose requests all timed out stops
at its next checkpoint, and SIGTERM during long work exits within the request timeout."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest

from ofa.demo import DEMO_IMAGE
from ofa.generate import on_checkpoint
from ofa.serve.batching import DynamicBatcher, ShuttingDownError, checkpoint
from ofa.serve.turns import Turns

from .conftest import serve_process


# ---------------------------------------------------------------------- the pieces
def test_checkpoints_run_between_chunks_and_steps_and_can_stop_the_work(demo_model):
    seen: list[str] = []
    with on_checkpoint(lambda: seen.append(threading.current_thread().name)):
        demo_model.classify(str(DEMO_IMAGE), [f"class {i}" for i in range(41)])
        assert len(seen) == 2  # chunks of 20 candidates: 20 | 20 | 1
        seen.clear()
        out = demo_model.caption(str(DEMO_IMAGE), beam_size=2, max_len_b=8)
        assert len(seen) == len(out["tokens"]) - 1  # between decoding steps
        # another thread's loops never see this thread's hook
        other = threading.Thread(target=demo_model.classify,
                                 args=(str(DEMO_IMAGE), [f"c{i}" for i in range(41)]))
        seen.clear()
        other.start()
        other.join()
        assert seen == []

    class Stop(Exception):
        pass

    def stop() -> None:
        raise Stop

    with on_checkpoint(stop), pytest.raises(Stop):
        demo_model.classify(str(DEMO_IMAGE), [f"class {i}" for i in range(41)])
    demo_model.classify(str(DEMO_IMAGE), ["a", "b"])  # the hook is gone again


def test_turns_go_to_the_least_served_waiter_first():
    turns = Turns(quantum_s=0.0)
    order: list[str] = []
    turns.acquire()

    def wait(name: str, used: float) -> None:
        turns.acquire(used)
        order.append(name)
        turns.release()

    threads = [threading.Thread(target=wait, args=args)
               for args in (("long", 5.0), ("new", 0.0), ("middle", 1.0))]
    for t in threads:
        t.start()
        time.sleep(0.05)  # arrival order: long, new, middle
    assert turns.should_pass(0.5) and not turns.should_pass(0.0)
    turns.release()
    for t in threads:
        t.join(5)
    assert order == ["new", "middle", "long"]


class Chunked:
    """A fake ``run``: ``options["chunks"]`` chunks of ``options["s"]`` seconds, with a
    checkpoint between two, recording (task, chunk) as they finish."""

    def __init__(self) -> None:
        self.done: list[tuple[str, int]] = []

    def __call__(self, task, options, payloads):
        for i in range(options.get("chunks", 1)):
            if i:
                checkpoint()
            time.sleep(options.get("s", 0.01))
            self.done.append((task, i))
        return payloads

    def count(self, task: str) -> int:
        return sum(1 for t, _ in self.done if t == task)


async def _with_batcher(run, scenario):
    batcher = DynamicBatcher(["caption", "classify", "vqa"], run, max_wait_s=0.0)
    await batcher.start()
    try:
        return await scenario(batcher)
    finally:
        await batcher.stop()


def test_a_short_call_runs_within_a_long_one():
    run = Chunked()

    async def scenario(b):
        long = asyncio.create_task(b.submit("classify", {"chunks": 100, "s": 0.02}, 1))
        while run.count("classify") < 3:
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        await b.submit("caption", {}, 2)
        waited = time.perf_counter() - start
        chunks_meanwhile = run.count("classify")
        await long
        return waited, chunks_meanwhile

    waited, chunks = asyncio.run(_with_batcher(run, scenario))
    assert chunks < 60  # the caption did not wait for the classify (100 chunks, >= 2 s)
    assert waited < 1.0  # at most the quantum (0.25 s) and a chunk, plus scheduling


def test_two_long_calls_take_turns():
    run = Chunked()

    async def scenario(b):
        await asyncio.gather(b.submit("classify", {"chunks": 40, "s": 0.02}, 1),
                             b.submit("vqa", {"chunks": 40, "s": 0.02}, 2))

    asyncio.run(_with_batcher(run, scenario))
    tasks = [t for t, _ in run.done]
    switches = sum(a != b for a, b in zip(tasks, tasks[1:], strict=False))
    assert switches >= 2  # neither ran all its chunks before the other started


def test_a_call_whose_requests_timed_out_stops_at_its_next_checkpoint():
    run = Chunked()

    async def scenario(b):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.submit("classify", {"chunks": 100, "s": 0.02}, 1), 0.3)
        at_timeout = run.count("classify")
        await asyncio.sleep(0.4)
        after = run.count("classify")
        assert (await b.submit("caption", {}, 7)).result == 7  # the model is free again
        return at_timeout, after

    at_timeout, after = asyncio.run(_with_batcher(run, scenario))
    assert 1 <= at_timeout < 30
    assert after <= at_timeout + 1  # at most the chunk that was running


def test_stop_drops_a_running_call_at_its_next_checkpoint():
    run = Chunked()

    async def scenario():
        b = DynamicBatcher(["classify"], run, max_wait_s=0.0)
        await b.start()
        long = asyncio.create_task(b.submit("classify", {"chunks": 200, "s": 0.02}, 1))
        while not run.done:
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        await b.stop()
        stopped = time.perf_counter() - start
        with pytest.raises(ShuttingDownError):
            await long
        return stopped

    assert asyncio.run(scenario()) < 1.0  # the call had 4 s of chunks left
    assert len(run.done) < 100


# ---------------------------------------------------------------------- over HTTP
class SlowScoring:
    """Every candidate chunk of the demo model takes at least ``delay`` seconds and is
    counted: "a long classify" then lasts a known time on any machine."""

    def __init__(self, model, delay: float = 0.2) -> None:
        self.chunks = 0
        inner = model.model.decode

        def decode(tokens, encoder_out, *rest, **kwargs):
            if not rest and not kwargs:  # score_candidates: no cache, unlike decoding steps
                time.sleep(delay)
                self.chunks += 1
            return inner(tokens, encoder_out, *rest, **kwargs)

        self.decode = decode


@pytest.fixture
def slow_scoring(demo_model):
    slow = SlowScoring(demo_model)
    demo_model.model.decode = slow.decode  # an instance attribute hides the method
    try:
        yield slow
    finally:
        del demo_model.model.decode


CLASSES = [f"class {i}" for i in range(200)]  # 10 chunks of 20: at least 2 s


def _post_in_thread(url: str, body: dict, out: list) -> threading.Thread:
    t = threading.Thread(target=lambda: out.append(httpx.post(url, json=body, timeout=60)))
    t.start()
    return t


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_caption_is_answered_while_a_long_classify_runs(serve, slow_scoring, png_b64):
    with serve(max_score_tokens=10**6, timeout_s=60) as live:
        out: list = []
        long = _post_in_thread(f"{live.url}/v1/classify",
                               {"image": png_b64, "classes": CLASSES, "topk": 3}, out)
        _wait_for(lambda: slow_scoring.chunks >= 2)
        start = time.monotonic()
        r = httpx.post(f"{live.url}/v1/caption", json={"image": png_b64}, timeout=60)
        took = time.monotonic() - start
        assert r.status_code == 200 and r.json()["caption"]
        assert long.is_alive() and slow_scoring.chunks < 10  # the classify is still running
        assert took < 2.0
        long.join(60)
        assert out[0].status_code == 200, out[0].text
        assert slow_scoring.chunks == 10  # and it ran to the end


def test_a_timed_out_request_stops_using_the_model(serve, slow_scoring, png_b64):
    with serve(max_score_tokens=10**6, timeout_s=1.0) as live:
        start = time.monotonic()
        r = httpx.post(f"{live.url}/v1/classify", timeout=60,
                       json={"image": png_b64, "classes": CLASSES})
        assert r.status_code == 504 and "1 s timeout" in r.json()["detail"]
        assert time.monotonic() - start < 3
        at_504 = slow_scoring.chunks
        time.sleep(0.5)
        assert slow_scoring.chunks <= at_504 + 1  # only the chunk under way, if any
        assert slow_scoring.chunks < 10
        r = httpx.post(f"{live.url}/v1/caption", json={"image": png_b64}, timeout=60)
        assert r.status_code == 200  # the model is free


def test_sigterm_during_long_work_exits_within_the_request_timeout(png_b64):
    # without checkpoints this request holds the model for minutes (2,000 answers, each
    # scored after a 1,000-character question); the budget is lifted on purpose. The read
    # timeout sets uvicorn's grace period (ceil(read + request timeout) + 2 = 9 s): the exit
    # must come well before it, so it is the abandoned work, not the grace, that ends it.
    with serve_process("--timeout", "2", "--read-timeout", "5",
                       "--max-score-tokens", "100000000") as server:
        proc, url = server.proc, server.url
        body = {"image": png_b64, "question": ("what color is the shape " * 40)[:1000],
                "mode": "all", "answers": [f"answer {i}" for i in range(2000)]}
        out: list = []
        request = _post_in_thread(f"{url}/v1/vqa", body, out)
        time.sleep(1.0)  # the request is inside the model now
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        exited = time.monotonic() - signalled
        request.join(10)
        assert out and out[0].status_code == 504  # cut at its timeout, not run for minutes
        # 504 about 1 s after the signal, then the running candidate chunk and the
        # interpreter's teardown (about 1-2 s together on 2 idle cores, more in a busy suite)
        assert exited < 7, exited
        print(f"exited {exited:.2f} s after SIGTERM")
