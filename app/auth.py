"""The maintainer page's lock: constant-time comparison, and a growing delay after wrong secrets."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    message: str = ""


class LoginGuard:
    """Checks maintainer secrets for every session of the process.

    Each wrong attempt sleeps ``base_delay_s`` and blocks further attempts for a delay that doubles with
    each consecutive failure (capped at ``max_delay_s``); a right attempt resets the count.
    """

    def __init__(self, base_delay_s: float = 2.0, max_delay_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._failures = 0
        self._blocked_until = 0.0

    def check(self, attempt: str, secret: str | None) -> LoginResult:
        """Compare ``attempt`` with ``secret`` unless attempts are blocked for now."""
        if not secret:
            return LoginResult(False, "The maintainer page is disabled: MAINTAINER_SECRET is not configured.")
        with self._lock:
            wait = self._blocked_until - self._clock()
            if wait > 0:
                return LoginResult(False, f"Too many wrong attempts: try again in {wait:.0f} s.")
            if hmac.compare_digest(attempt.encode("utf-8"), secret.encode("utf-8")):
                self._failures = 0
                return LoginResult(True)
            self._failures += 1
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (self._failures - 1))
            self._blocked_until = self._clock() + delay
            failures = self._failures
        logger.warning("wrong maintainer secret (%d consecutive)", failures)
        self._sleep(self.base_delay_s)
        return LoginResult(False, "Wrong secret.")
