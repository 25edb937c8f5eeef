"""Through HTTP, concurrent single-tweet requests really share model calls and get their own answers."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from api.main import create_app
from sentiment.registry import ModelRegistry


def test_concurrent_http_requests_share_model_calls(exports_dir, settings_factory, counting_loader, predictors):
    loader, made = counting_loader
    settings = settings_factory(exports_dir, max_batch_wait_ms=20)
    app = create_app(settings, registry=ModelRegistry(settings, loader=loader))
    texts = [f"tweet number {i} {'love' if i % 2 else 'hate'} {'!' * i}" for i in range(16)]

    async def scenario() -> list[dict]:
        await app.state.registry.start()
        made["tiny-bert"].calls.clear()  # forget the warm-up calls
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*(client.post("/v1/predict", json={"text": t}) for t in texts))
        await app.state.registry.aclose()
        return [r.json() for r in responses]

    bodies = asyncio.run(scenario())
    calls = made["tiny-bert"].calls
    assert sum(calls) == 16
    assert len(calls) <= 3, calls  # 16 requests, at most 3 model calls (typically 1 or 2)
    assert max(calls) >= 8
    # Each response is its own text's answer, the same as an unbatched call.
    expected = predictors["tiny-bert"].predict_proba(texts)[:, 1]
    np.testing.assert_allclose([b["probabilities"]["positive"] for b in bodies], expected, atol=1e-5)
    for text, body in zip(texts, bodies, strict=True):
        single = predictors["tiny-bert"].predict_proba([text])[0, 1]
        assert abs(body["probabilities"]["positive"] - single) < 1e-5
