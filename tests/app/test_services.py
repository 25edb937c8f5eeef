"""The product's cached services read their settings when called."""

from __future__ import annotations

import pandas as pd
import pytest

from app import services
from app.settings import get_settings


@pytest.mark.parametrize(("ttl", "reads"), [("0", 3), ("3600", 1)])
def test_runs_cache_follows_runs_cache_ttl_s(ttl: str, reads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """RUNS_CACHE_TTL_S was documented and declared but never read (the page cached 60 s whatever it said)."""
    calls: list[str] = []
    monkeypatch.setattr(services.runs, "search_runs", lambda uri: calls.append(uri) or pd.DataFrame({"run": [1]}))
    monkeypatch.setenv("RUNS_CACHE_TTL_S", ttl)
    get_settings.cache_clear()
    services.clear_runs_cache()
    try:
        for _ in range(3):
            frame = services.runs_frame("sqlite:///ttl-test.db", "exports/runs", seed=False)
            assert frame["run"].tolist() == [1]
    finally:
        services.clear_runs_cache()
        get_settings.cache_clear()
    assert len(calls) == reads
