"""The maintainer page's lock: constant-time comparison, and a growing delay after wrong secrets, per client.

The delay is counted per client address (IPv6: per /64 and per /56), so a visitor guessing the secret slows
mostly themselves; a global budget of wrong secrets per hour bounds what many addresses guess together. :func:`client_address` says who the client is: the connection's peer, or, when
that peer is a proxy listed in ``TRUSTED_PROXIES``, the client that the proxy names in X-Forwarded-For.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

logger = logging.getLogger(__name__)

# st.context.ip_address is None for a loopback peer; a proxy on the same host is trusted as this address.
LOOPBACK = "127.0.0.1"
IPV6_CLIENT_PREFIX = 64  # one IPv6 subscriber gets a whole /64: throttling single addresses would not slow it
# ... and often a /56 or a /48: 20,000 /64s of one /48 each had a fresh count. The /56 is counted as well.
IPV6_SITE_PREFIX = 56
GLOBAL_WINDOW_S = 3600.0


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    message: str = ""


@dataclass
class _Failures:
    count: int
    blocked_until: float
    last: float


def _parse(text: str) -> IPv4Address | IPv6Address | None:
    """An address from a peer or an X-Forwarded-For entry (some proxies append the port), or None."""
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:52814
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # 192.0.2.1:52814
        text = text.partition(":")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return address


def client_address(peer: str | None, forwarded_for: Iterable[str],
                   trusted_proxies: Sequence[IPv4Network | IPv6Network]) -> str:
    """The address a login attempt comes from, as far as it can be trusted.

    Args:
        peer: the connection's peer (``st.context.ip_address``; None for a loopback peer).
        forwarded_for: the X-Forwarded-For header values, in the order received.
        trusted_proxies: the proxies whose X-Forwarded-For is believed (``TRUSTED_PROXIES``).

    Returns:
        The peer, unless it is a trusted proxy: then the header is read from the right, each trusted proxy
        vouching for the hop before it, and the first address that is not a trusted proxy is the client.
        Entries left of it were written by the client itself and are ignored.
    """
    current = peer if isinstance(peer, str) and peer else LOOPBACK  # anything but an address string: unknown
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    while hops:
        address = _parse(current)
        if address is None or not any(address in network for network in trusted_proxies):
            break
        forwarded = _parse(hops.pop())
        if forwarded is None:  # a garbled header: the last trusted hop is all that is known
            break
        current = str(forwarded)
    address = _parse(current)
    return current if address is None else str(address)


def _throttle_keys(client: str) -> tuple[str, ...]:
    """The counters a client's wrong secrets go to: its address, or its IPv6 /64 and /56."""
    address = _parse(client)
    if isinstance(address, IPv6Address):
        return tuple(str(IPv6Network((address, prefix), strict=False))
                     for prefix in (IPV6_CLIENT_PREFIX, IPV6_SITE_PREFIX))
    return (client,)


class LoginGuard:
    """Checks maintainer secrets, with a delay after wrong ones counted for each client on its own.

    Each wrong attempt sleeps ``base_delay_s`` and blocks that client's further attempts for a delay that
    doubles with each consecutive failure (capped at ``max_delay_s``); a right attempt resets its count.
    IPv6 clients are counted per /64 and per /56 (blocked while either is). At most ``max_clients`` counters
    are remembered (the one whose last failure is oldest is dropped first), each for ``forget_after_s`` after
    its last failure, so many addresses cannot grow the memory without bound; and at most
    ``global_failures_per_hour`` wrong secrets are accepted from everyone together in any hour, after which
    every attempt waits for the window to move (the price: a flood of guesses also delays the maintainer).
    """

    def __init__(self, base_delay_s: float = 2.0, max_delay_s: float = 60.0, max_clients: int = 10_000,
                 forget_after_s: float = 3600.0, global_failures_per_hour: int = 100,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_delay_s = base_delay_s
        self.global_failures_per_hour = global_failures_per_hour
        self._recent: deque[float] = deque()  # times of the wrong secrets of the last hour, from everyone
        self.max_delay_s = max_delay_s
        self.max_clients = max_clients
        self.forget_after_s = forget_after_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, _Failures] = OrderedDict()  # oldest last failure first

    def check(self, attempt: str, secret: str | None, *, client: str) -> LoginResult:
        """Compare ``attempt`` with ``secret`` unless ``client``'s attempts are blocked for now."""
        if not secret:
            return LoginResult(False, "The maintainer page is disabled: MAINTAINER_SECRET is not configured.")
        keys = _throttle_keys(client)
        with self._lock:
            now = self._clock()
            self._forget(now)
            while self._recent and now - self._recent[0] >= GLOBAL_WINDOW_S:
                self._recent.popleft()
            if len(self._recent) >= self.global_failures_per_hour:
                wait = GLOBAL_WINDOW_S - (now - self._recent[0])
                return LoginResult(False, f"Too many wrong secrets on this page lately: try again in {wait:.0f} s.")
            known = [self._failures[key] for key in keys if key in self._failures]
            blocked_until = max((failures.blocked_until for failures in known), default=0.0)
            if blocked_until > now:
                return LoginResult(False, f"Too many wrong attempts: try again in {blocked_until - now:.0f} s.")
            if hmac.compare_digest(attempt.encode("utf-8"), secret.encode("utf-8")):
                for key in keys:
                    self._failures.pop(key, None)
                return LoginResult(True)
            self._recent.append(now)
            count = 0
            for key in keys:
                failures = self._failures.get(key)
                key_count = 1 if failures is None else failures.count + 1
                delay = min(self.max_delay_s, self.base_delay_s * 2 ** (key_count - 1))
                self._failures[key] = _Failures(key_count, now + delay, now)
                self._failures.move_to_end(key)
                count = max(count, key_count)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        logger.warning("wrong maintainer secret from %s (%d consecutive)", keys[0], count)
        self._sleep(self.base_delay_s)
        return LoginResult(False, "Wrong secret.")

    def _forget(self, now: float) -> None:
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if now - oldest.last < self.forget_after_s:
                return
            self._failures.popitem(last=False)


class RateLimiter:
    """At most ``per_client`` events per client (IPv6: per /64 and per /56) and ``overall`` events from everyone in
    any ``window_s``: the feedback buttons, which any visitor can press (300 thumbs-up took one session 17 s).

    The counters live in memory, one per process, bounded by ``max_clients`` (oldest dropped first).
    """

    def __init__(self, per_client: int, overall: int, window_s: float = 3600.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()

    def allow(self, client: str) -> float:
        """Count one event of ``client``; 0 when allowed, else the seconds until one would be (nothing counted)."""
        keys = _throttle_keys(client)
        with self._lock:
            now = self._clock()
            horizon = now - self.window_s
            queues = [self._events.setdefault(key, deque()) for key in keys]
            for queue in (*queues, self._all):
                while queue and queue[0] <= horizon:
                    queue.popleft()
            full = [q for q in queues if len(q) >= self.per_client]
            if len(self._all) >= self.overall:
                full.append(self._all)
            if full:
                return max(q[0] + self.window_s - now for q in full)
            for queue in (*queues, self._all):
                queue.append(now)
            for key in keys:
                self._events.move_to_end(key)
            while len(self._events) > self.max_clients:
                self._events.popitem(last=False)
            return 0.0
