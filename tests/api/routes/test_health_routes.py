"""Liveness, readiness before and after loading, Prometheus metrics, request ids."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from sentiment.predictor import load_predictor
from sentiment.registry import ModelRegistry


def test_readiness_before_and_after_load(exports_dir, settings_factory) -> None:
    gate = threading.Event()

    def gated_loader(folder: Path, threads: int | None = None):
        gate.wait(10)
        return load_predictor(folder, threads=threads)

    settings = settings_factory(exports_dir, ready_timeout_s=0.05)
    app = create_app(settings, registry=ModelRegistry(settings, loader=gated_loader))
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        response = client.get("/readyz")
        assert response.status_code == 503 and response.json()["status"] == "loading"
        predict = client.post("/v1/predict", json={"text": "too early"})
        assert predict.status_code == 503 and predict.headers["retry-after"] == "1"
        gate.set()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        body = client.get("/readyz").json()
        assert body["status"] == "ready" and body["default"] == "tiny-bert"
        assert client.post("/v1/predict", json={"text": "now"}).status_code == 200


def test_mounted_without_lifespan_loads_on_first_use(exports_dir, settings_factory) -> None:
    """A host that does not run our lifespan (Streamlit's mount) still gets its models."""
    app = create_app(settings_factory(exports_dir))
    client = TestClient(app)  # no `with`: the lifespan never runs
    assert client.get("/readyz").status_code == 503  # ...and asking started the loading
    assert client.post("/v1/predict", json={"text": "first request waits for the load"}).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_failed_load_is_reported(tmp_path, settings_factory) -> None:
    with TestClient(create_app(settings_factory(tmp_path / "nowhere", ready_timeout_s=5))) as client:
        assert client.post("/v1/predict", json={"text": "hi"}).status_code == 503
        body = client.get("/readyz").json()
        assert body["status"] == "failed" and "nowhere" in body["detail"]
        assert client.get("/healthz").status_code == 200


def test_metrics_after_traffic(client) -> None:
    client.post("/v1/predict", json={"text": "count me"})
    client.post("/v1/predict", json={"text": ""})
    client.get("/no/such/route")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'http_requests_total{method="POST",route="/v1/predict",status="200"}' in text
    assert 'http_errors_total{route="/v1/predict",status="422"}' in text
    assert 'route="unmatched"' in text and "/no/such/route" not in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/predict"}' in text
    assert 'model_batch_size_count{model="tiny-bert"}' in text
    assert 'predictions_total{label=' in text
    assert "models_ready 1.0" in text


def test_request_id_echoed_or_generated(client) -> None:
    mine = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert mine.headers["x-request-id"] == "trace-42"
    generated = client.post("/v1/predict", json={"text": "x"}).headers["x-request-id"]
    assert len(generated) == 32
    forged = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert forged != "bad id with spaces"


def test_docs_and_examples(client) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert {"positive", "negative"} <= set(body["examples"])
    assert schema["components"]["schemas"]["PredictRequest"]["properties"]["text"]["maxLength"] == 1000
    assert schema["components"]["schemas"]["BatchPredictRequest"]["properties"]["texts"]["maxItems"] == 256
    assert {"/predict", "/predict_batch", "/", "/v1/models", "/healthz", "/readyz"} <= set(schema["paths"])
