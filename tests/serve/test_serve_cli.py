"""``ofa serve``: flags, refusals before anything starts, and a real process that shuts down
gracefully on SIGTERM while a request is in flight."""

from __future__ import annotations

import signal
import socket
import threading
import time

import httpx
import pytest

from ofa.cli import main

from .conftest import serve_process

FLAGS = ("--model", "--host", "--port", "--api-key", "OFA_API_KEY", "--allow-no-auth",
         "--max-batch-size", "--max-wait-ms", "--queue-size", "--timeout", "--max-body-mb",
         "--max-score-tokens", "--read-timeout", "--keep-alive", "--max-connections",
         "--device", "--dtype")


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in FLAGS:
        assert flag in text, flag


def test_public_host_without_key_is_refused(capsys, monkeypatch):
    monkeypatch.delenv("OFA_API_KEY", raising=False)
    assert main(["serve", "--model", "shapes-demo", "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ofa: error: refusing to serve on 0.0.0.0 without an API key")
    assert "--allow-no-auth" in err and "Traceback" not in err


def test_key_or_explicit_flag_lifts_the_refusal(capsys, monkeypatch):
    # past the check, the next step fails on the missing model: proof the refusal is gone
    args = ["serve", "--model", "/no/such/model", "--host", "0.0.0.0", "--port", "0"]
    monkeypatch.delenv("OFA_API_KEY", raising=False)
    assert main([*args, "--allow-no-auth"]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    assert main([*args, "--api-key", "k"]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    monkeypatch.setenv("OFA_API_KEY", "k")
    assert main(args) == 1
    assert "no such checkpoint" in capsys.readouterr().err


def test_loopback_detection():
    from ofa.serve import is_loopback

    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com", "myhost"):
        assert not is_loopback(host), host


def test_startup_mistakes_are_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", "shapes-demo", "--port", str(port)]) == 1
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert main(["serve", "--model", "shapes-demo", "--max-batch-size", "0"]) == 1
    assert "max batch size must be a positive integer" in capsys.readouterr().err
    assert main(["serve", "--model", "shapes-demo", "--port", "70000"]) == 1
    assert "port must be between" in capsys.readouterr().err
    assert main(["serve", "--model", "/no/such/model", "--port", "0"]) == 1
    assert "no such checkpoint" in capsys.readouterr().err


def test_sigterm_lets_the_in_flight_request_finish(png_b64, tmp_path):
    # a long batching wait keeps the request in flight when the signal arrives
    with serve_process("--max-wait-ms", "1500", env={"OFA_API_KEY": "k3y"}) as server:
        proc, url = server.proc, server.url
        auth = {"X-API-Key": "k3y"}
        assert httpx.post(f"{url}/v1/caption", json={"image": png_b64}).status_code == 401
        result: list = []
        request = threading.Thread(target=lambda: result.append(httpx.post(
            f"{url}/v1/caption", json={"image": png_b64}, headers=auth, timeout=60)))
        started = time.monotonic()
        request.start()
        time.sleep(0.5)  # the request now waits in the batcher
        proc.send_signal(signal.SIGTERM)
        request.join(60)
        assert result and result[0].status_code == 200, result and result[0].text
        assert result[0].json()["caption"]
        assert time.monotonic() - started >= 1.4  # it did wait its batch window
        assert proc.wait(30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz")
