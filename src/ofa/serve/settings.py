"""Server settings: one frozen object, checked once, so a bad flag fails at startup with one
clear line instead of surfacing later as an odd runtime error."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..preprocess import DEFAULT_MAX_PIXELS

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine.

    Unknown host names count as not loopback: refusing by mistake is safer than exposing an
    unauthenticated model by mistake."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches, bounds and protects its work.

    ``max_wait_ms`` is how long a request waits for companions before its batch runs: the
    price of batching in latency. ``queue_size`` bounds the requests waiting per task: beyond
    it the server answers 503 at once rather than letting latency grow without limit.
    ``timeout_s`` bounds the whole request (queue + inference). ``max_pixels`` guards image
    decoding against decompression bombs. ``vqa_answers`` is the default candidate list for
    VQA requests that bring none (the embedded demo model's answer set, for instance).

    ``max_score_tokens`` bounds the model time of one candidate-scoring request (classify,
    VQA mode all) before it is queued (:mod:`.cost`): the default is a few seconds for the
    base model on two CPU cores; raise it on a GPU. ``read_timeout_s`` is how long a request
    may take to arrive whole (slow or stalled uploads are cut), ``keep_alive_s`` how long an
    idle connection stays open, and ``max_connections`` how many may be open at once.
    ``max_samples`` bounds the images one drawing request (``/v1/imagine``) samples: each
    is a full decode of the code grid.
    """

    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    queue_size: int = 64
    timeout_s: float = 30.0
    max_body_mb: float = 10.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    api_key: str | None = None
    vqa_answers: Sequence[str] | None = None
    max_score_tokens: int = 2000
    read_timeout_s: float = 20.0
    keep_alive_s: float = 5.0
    max_connections: int = 512
    max_samples: int = 24

    def __post_init__(self) -> None:
        _positive_int(self.max_batch_size, "max batch size")
        _positive_int(self.queue_size, "queue size")
        _positive_int(self.max_pixels, "max pixels")
        _positive_int(self.max_score_tokens, "max score tokens")
        _positive_int(self.max_connections, "max connections")
        _positive_int(self.max_samples, "max samples")
        _number(self.max_wait_ms, "max wait (ms)", allow_zero=True)
        _number(self.timeout_s, "timeout (s)")
        _number(self.max_body_mb, "max body size (MB)")
        _number(self.read_timeout_s, "read timeout (s)")
        _number(self.keep_alive_s, "keep-alive timeout (s)")
        if self.api_key is not None and not self.api_key.strip():
            raise InputError("the API key is empty; pass a non-empty key or none")
        if self.vqa_answers is not None:
            answers = tuple(self.vqa_answers)
            if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
                raise InputError("default VQA answers must be a non-empty list of strings")
            object.__setattr__(self, "vqa_answers", answers)

    @property
    def task_defaults(self) -> dict[str, dict]:
        """Per task, the server's values of options a request leaves unset."""
        return {"vqa": {"answers": list(self.vqa_answers)}} if self.vqa_answers else {}

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0


def _positive_int(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")


def _number(value: object, what: str, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
    if not ok or value < 0 or (value == 0 and not allow_zero) or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{what} must be a finite number {bound}, got {value!r}")
