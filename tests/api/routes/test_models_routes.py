"""GET /v1/models lists every served model with its metadata."""

from __future__ import annotations


def test_lists_models_and_default(client) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["default"] == "tiny-bert"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"tiny-bert", "tiny-lr"}
    assert by_name["tiny-bert"]["default"] and not by_name["tiny-lr"]["default"]
    assert by_name["tiny-bert"]["aliases"] == ["champion"]
    assert by_name["tiny-bert"]["max_length"] == 64 and by_name["tiny-bert"]["family"] == "transformer"
    assert by_name["tiny-lr"]["metrics"]["validation_random"] == {"accuracy": 0.9, "f1_macro": 0.89}
    assert by_name["tiny-lr"]["version"] == "1" and by_name["tiny-lr"]["variant"] == "onnx"
    assert by_name["tiny-lr"]["mlflow"]["registered_model"] == "tweet-sentiment"
