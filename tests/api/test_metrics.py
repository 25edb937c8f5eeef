"""Prometheus metrics: the label sets stay bounded whatever clients send."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.main import create_app


def _series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("keys", [(), ("a-real-key-0123456789",)])
def test_odd_methods_and_paths_do_not_add_series(exports_dir, settings_factory, keys) -> None:
    """Audit finding 2: 2,000 methods X00000… once grew /metrics from 13 KB to 3.3 MB."""
    app = create_app(settings_factory(exports_dir, api_keys=keys))
    with TestClient(app) as client:
        app.state.registry.load()
        for number in range(3):  # every label value the flood below can produce, seen once
            client.request(f"X{number:05d}", "/v1/predict")
            client.request(f"Y{number:05d}", f"/nowhere/{number}")
            client.request("GET", f"/nowhere/{number}")
        client.get("/metrics")  # the scrape's own series
        before = _series(client.get("/metrics").text)
        for number in range(3, 203):
            client.request(f"X{number:05d}", "/v1/predict")
            client.request(f"Y{number:05d}", f"/nowhere/{number}")
            client.request("GET", f"/nowhere/{number}")
        after = _series(client.get("/metrics").text)
    labels = {name for line in after for name in re.findall(r'method="([^"]*)"', line)}
    assert labels <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "other"}
    assert not any("nowhere" in line for line in after)
    changed = {line.rsplit(" ", 1)[0] for line in after} - {line.rsplit(" ", 1)[0] for line in before}
    assert not changed, sorted(changed)[:5]
