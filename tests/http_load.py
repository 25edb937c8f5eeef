"""Test helpers for a running HTTP service: a free port, waiting for readiness, and steady load on /v1/predict."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(base: str, attempts: int = 600, pause_s: float = 0.05) -> None:
    """Poll ``/readyz`` until it answers 200 (the models are loaded), or give up quietly after ``attempts``."""
    for _ in range(attempts):
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(pause_s)


@dataclass
class Load:
    """``connections`` clients posting one tweet to ``/v1/predict`` without pause, as a context manager.

    ``records`` holds ``(began, ended, status, version)`` per request (monotonic seconds; version None unless 200).
    """

    base: str
    connections: int = 8
    text: str = "the crew was lovely and the flight early"
    records: list[tuple[float, float, int, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(self.connections)]

    def _client(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as http:
            while not self._stop.is_set():
                began = time.monotonic()
                answer = http.post("/v1/predict", json={"text": self.text})
                version = answer.json().get("version") if answer.status_code == 200 else None
                self.records.append((began, time.monotonic(), answer.status_code, version))

    def wait_for(self, more: int) -> None:
        """Block until ``more`` further requests were answered."""
        target = len(self.records) + more
        while len(self.records) < target:
            time.sleep(0.01)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
