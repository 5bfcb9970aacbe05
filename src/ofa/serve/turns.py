"""Turn-taking on the model: one call runs at a time, and a long call hands the model over at
its checkpoints, so a big classify cannot starve a caption.

Each waiting call sits in its own worker thread (torch would only fight over the same cores
or GPU if two ran at once). The turn goes to the waiting call that has used the model
least so far (*least attained service*): a new request, having used nothing, goes before
any call that has been running, so it waits at most one checkpoint (one decoding step or
one candidate chunk) of the call in progress; calls that both run long take turns. Sizes
are not known in advance, and this order needs none: whatever turns out long is what waits.
"""

from __future__ import annotations

import itertools
import threading
import time

# A running call hands over only to a call that has used the model at least this much less
# than it has: without the margin two long calls would swap at every chunk (cheap, but it
# gains nothing), and a short call could be cut by a newcomer a few milliseconds in.
QUANTUM_S = 0.25


class Turns:
    """A lock granted to the waiter with the least model time used (then first come)."""

    def __init__(self, quantum_s: float = QUANTUM_S) -> None:
        self.quantum_s = quantum_s
        self._cond = threading.Condition()
        self._waiting: set[tuple[float, int]] = set()  # (model time used, arrival)
        self._arrivals = itertools.count()
        self._held = False

    def acquire(self, used_s: float = 0.0) -> None:
        me = (used_s, next(self._arrivals))
        with self._cond:
            self._waiting.add(me)
            while self._held or min(self._waiting) != me:
                self._cond.wait()
            self._waiting.remove(me)
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def should_pass(self, used_s: float) -> bool:
        """Whether a holder that has used ``used_s`` seconds should let a waiter run."""
        with self._cond:
            return bool(self._waiting) and min(self._waiting)[0] < used_s - self.quantum_s


class Call:
    """One call's use of the model: take the turn, check in at checkpoints, give it back."""

    def __init__(self, turns: Turns) -> None:
        self.turns = turns
        self.used_s = 0.0
        self._since = 0.0

    def __enter__(self) -> Call:
        self.turns.acquire(self.used_s)
        self._since = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._note()
        self.turns.release()

    def checkpoint(self) -> bool:
        """Let a call that has used the model less run first; True if one did."""
        self._note()
        if not self.turns.should_pass(self.used_s):
            return False
        self.turns.release()
        self.turns.acquire(self.used_s)
        self._since = time.perf_counter()
        return True

    def _note(self) -> None:
        now = time.perf_counter()
        self.used_s += now - self._since
        self._since = now
