"""Fixtures for the server tests: the embedded demo model, and real uvicorn servers on free
loopback ports (run in a thread), so requests go through HTTP exactly as in production."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import uvicorn

from ofa.demo import DEMO_IMAGE
from ofa.serve import ServeSettings, bind, create_app, uvicorn_config


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory):
    """The demo model with a tiny VQGAN attached, so that /v1/imagine draws too."""
    import ofa

    from tiny_imagegen import write_vqgan

    vqgan = write_vqgan(tmp_path_factory.mktemp("parts") / "vqgan")
    return ofa.load("shapes-demo", device="cpu").attach(vqgan=vqgan)


@pytest.fixture(scope="session")
def demo_answers() -> list[str]:
    from ofa.data.shapes import VQA_ANSWERS

    return list(VQA_ANSWERS)


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    return DEMO_IMAGE.read_bytes()


@pytest.fixture(scope="session")
def png_b64(png_bytes: bytes) -> str:
    return base64.b64encode(png_bytes).decode("ascii")


@dataclass
class Live:
    url: str
    app: object
    server: uvicorn.Server


@contextmanager
def live_server(model, **settings) -> Iterator[Live]:
    """``create_app(model, ServeSettings(**settings))`` served by uvicorn in a thread, with
    the production configuration (timeouts, connection cap)."""
    config = ServeSettings(**settings)
    app = create_app(model, config)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app, config, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{sock.getsockname()[1]}", app, server)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    lines: list[str]  # what it printed to stderr so far


@contextmanager
def serve_process(*args: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``ofa serve --model shapes-demo --port 0 --device cpu ARGS`` as a child process, its
    stderr drained (so it never blocks on a full pipe); killed at the end if still running,
    and its output must hold no traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ofa.cli", "serve", "--model", "shapes-demo", "--port", "0",
         "--device", "cpu", "--log-level", "warning", *args],
        stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    url_found = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "serving" in line:
                url_found.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert url_found.wait(120), "".join(lines)
        url = re.search(r"http://[\d.]+:\d+", "".join(lines)).group(0)
        yield ServerProcess(proc, url, lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in "".join(lines)


@pytest.fixture
def serve(demo_model, demo_answers) -> Callable:
    """``with serve(**settings) as live:`` a server for the demo model (VQA answers set)."""

    def start(model=None, **settings):
        settings.setdefault("vqa_answers", demo_answers)
        return live_server(model or demo_model, **settings)

    return start


@pytest.fixture(scope="module")
def shared_server(demo_model, demo_answers) -> Iterator[Live]:
    """One server for tests that do not depend on its settings."""
    with live_server(demo_model, vqa_answers=demo_answers, max_wait_ms=5) as live:
        yield live


class Gated:
    """The demo model, but every call waits at a gate the test opens: makes "a batch is
    running" a state the test controls instead of a race."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []  # the batch size of each call

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def run(self, task, images=None, **kwargs):
        self.calls.append(kwargs.get("batch_size", 1))
        self.entered.set()
        if not self.gate.wait(30):
            raise RuntimeError("gate never opened")
        return self.inner.run(task, images, **kwargs)


@pytest.fixture
def gated(demo_model) -> Gated:
    g = Gated(demo_model)
    yield g
    g.gate.set()  # never leave a worker thread blocked
