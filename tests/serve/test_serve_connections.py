"""Slow, half-sent and idle connections are closed after a bounded time, and connections
beyond the cap are refused: none can hold the server's sockets for ever."""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    start = time.monotonic()
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - start


def _detail(response: bytes) -> str:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()
    return json.loads(body)["detail"]


def test_half_sent_headers_get_408_and_are_closed(serve):
    with serve(read_timeout_s=0.5) as live:
        sock = _connect(live.url)
        sock.sendall(b"POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        data, took = _read_until_closed(sock)
        sock.close()
        assert data.startswith(b"HTTP/1.1 408 ")
        assert "0.5 s read timeout" in _detail(data)
        assert 0.4 < took < 2.0
        assert httpx.get(f"{live.url}/healthz").status_code == 200  # others are served


def test_a_trickle_does_not_extend_the_deadline(serve):
    with serve(read_timeout_s=0.5) as live:
        sock = _connect(live.url)
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 1000
        stop = threading.Event()

        def trickle():  # slowloris: one byte every 50 ms, never the end of the headers
            for byte in request:
                if stop.is_set():
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.05)

        sender = threading.Thread(target=trickle)
        sender.start()
        data, took = _read_until_closed(sock)
        stop.set()
        sender.join(5)
        sock.close()
        assert data.startswith(b"HTTP/1.1 408 ") and 0.4 < took < 2.0


def test_silent_and_slow_body_connections_are_closed(serve):
    with serve(read_timeout_s=0.5) as live:
        silent = _connect(live.url)  # connects, sends nothing
        slow = _connect(live.url)  # complete headers, then a body that never comes
        slow.sendall(b"POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100000\r\n\r\n{\"image\": \"")
        for sock in (silent, slow):
            data, took = _read_until_closed(sock)
            sock.close()
            assert data.startswith(b"HTTP/1.1 408 "), data[:80]
            assert took < 2.0
        # the cut request reached the app (its headers were complete): no answer, not a 500
        metrics = httpx.get(f"{live.url}/metrics").text
        assert 'ofa_requests_total{status="499",task="caption"} 1.0' in metrics
        assert 'status="500"' not in metrics


def test_idle_keep_alive_connections_are_closed(serve):
    with serve(keep_alive_s=0.3) as live:
        sock = _connect(live.url)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data, took = _read_until_closed(sock)
        sock.close()
        assert data.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in data
        assert took < 2.0  # answered, then closed once idle for 0.3 s


def test_hundreds_of_half_open_connections_are_all_closed(serve):
    with serve(read_timeout_s=0.5) as live:
        socks = [_connect(live.url) for _ in range(300)]
        for sock in socks:
            sock.sendall(b"POST /v1/caption HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        for sock in socks:
            data, _ = _read_until_closed(sock)
            assert data.startswith(b"HTTP/1.1 408 ")
            sock.close()
        assert time.monotonic() - start < 5.0
        assert httpx.get(f"{live.url}/healthz").status_code == 200


def test_connections_beyond_the_cap_get_503(serve):
    with serve(max_connections=3) as live:
        idle = [_connect(live.url) for _ in range(3)]
        time.sleep(0.1)  # accepted by the server
        r = httpx.get(f"{live.url}/healthz")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "3 open connections" in r.json()["detail"]
        for sock in idle:
            sock.close()
        time.sleep(0.1)
        assert httpx.get(f"{live.url}/healthz").status_code == 200
