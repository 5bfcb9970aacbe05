"""uvicorn's HTTP/1.1 protocol (h11) with the two guards it lacks: a read deadline and a cap
on open connections.

uvicorn times out idle keep-alive connections only: a connection that sends nothing, or
sends its headers or body a byte at a time (slowloris), is held open for ever, and a few
thousand of them exhaust the server. Here every request must arrive whole, headers and
body, within ``read_timeout_s`` of its first byte (or of the connection opening); past
that the client gets a 408 and the connection is closed. Connections beyond
``max_connections`` get a 503 for their request (a JSON body, like every error of this
API, which uvicorn's own ``limit_concurrency`` does not give) and are closed.
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import error_response

READING = (h11.IDLE, h11.SEND_BODY)  # the client's side of a request not yet read whole


def guarded_protocol(read_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for these limits."""
    return type("GuardedH11Protocol", (_Guarded,),
                {"read_timeout_s": read_timeout_s, "max_connections": max_connections})


class _Guarded(H11Protocol):
    read_timeout_s: float
    max_connections: int
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:  # this one included
            self.app = _too_many_connections(self.max_connections)
        self._arm()  # a connection that never sends a byte is a request never read, too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # idle now (uvicorn's keep-alive timer runs) unless a pipelined request is under way
        if self.conn.their_state is h11.SEND_BODY or self.conn.trailing_data[0]:
            self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # ------------------------------------------------------------------ the deadline
    def _watch(self) -> None:
        if self.transport.is_closing() or self.conn.their_state not in READING:
            self._disarm()  # read whole (or given up): the request timeout takes over
        else:
            self._arm()

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            # written by hand: h11 cannot answer a request whose headers never arrived
            body = json.dumps({"detail": f"the request did not arrive whole within the "
                                         f"server's {self.read_timeout_s:g} s read timeout; "
                                         f"send headers and body promptly"}).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\n"
                                 b"content-type: application/json\r\nconnection: close\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()  # a request still reading its body sees a disconnect


def _too_many_connections(limit: int):
    """The ASGI app answering requests of connections over the cap."""
    response = error_response(503, f"the server holds {limit:,} open connections, its limit; "
                                   "retry shortly", {"Retry-After": "1", "Connection": "close"})

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http":
            await response(scope, receive, send)

    return app
