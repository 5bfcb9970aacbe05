"""Running the app under uvicorn on a socket we bind ourselves.

Binding first turns the usual startup mistakes (port taken, unknown host) into one clear
error line before the model is loaded, and lets ``--port 0`` pick a free port whose number
is printed. uvicorn handles SIGINT/SIGTERM gracefully: it stops accepting connections, lets
in-flight requests finish, then stops the batcher. Every wait there is bounded: a request
arrives whole within the read timeout or is cut (:mod:`.protocol`), is answered or gets its
504 within the request timeout, and the model work of a 504 stops at its next checkpoint.
"""

from __future__ import annotations

import math
import signal
import socket
import threading

from ..errors import InputError
from .settings import ServeSettings


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port``, for uvicorn to serve."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be between 0 and 65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise InputError(f"cannot resolve host {host!r}: {e}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)  # connections made before uvicorn starts wait instead of failing
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def uvicorn_config(app, settings: ServeSettings, log_level: str = "info"):
    """The ``uvicorn.Config`` serving ``app`` within the limits of ``settings``."""
    import uvicorn

    from .protocol import guarded_protocol

    # in-flight requests end within read + request timeout (then 408 or 504): the grace
    # period only has to cover that, plus a margin for the answer to be written
    grace = math.ceil(settings.read_timeout_s + settings.timeout_s) + 2
    return uvicorn.Config(
        app, log_level=log_level, server_header=False, timeout_graceful_shutdown=grace,
        http=guarded_protocol(settings.read_timeout_s, settings.max_connections),
        timeout_keep_alive=settings.keep_alive_s)


def run_server(app, sock: socket.socket, settings: ServeSettings,
               log_level: str = "info") -> None:
    """Serve ``app`` on ``sock`` until SIGINT/SIGTERM (blocking)."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(app, settings, log_level))
    if threading.current_thread() is not threading.main_thread():
        server.run(sockets=[sock])
        return
    # After its graceful shutdown uvicorn re-raises SIGTERM to the previous handler; with
    # the default one the process would die by the signal. A stop we finished cleanly
    # should exit 0, so the previous handler is a no-op while we serve.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
