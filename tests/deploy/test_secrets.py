"""deploy/kubernetes: every pod that serves the API requires its keys from a Secret, as the lean API always did.

Audit (issue 20): app.yaml set no API_KEYS, so the product's ``/api`` answered anyone while the lean API asked
for a key. An empty API_KEYS leaves the API open (``api.settings.Settings``), so the manifests must never let a
pod start without one.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.test_kubernetes import container, resources

# The Deployments that serve the API (the lean image, and the product's /api), each with its own Secret.
API_PODS = ("tweet-sentiment-api", "tweet-sentiment-app")
REQUIRED_KEYS = ("API_KEYS", "ADMIN_KEY")


def env_of(name: str) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container(resources()[("Deployment", name)])["env"]}


@pytest.mark.parametrize("name", API_PODS)
def test_every_pod_serving_the_api_requires_its_keys_from_its_secret(name: str) -> None:
    env = env_of(name)
    for key in REQUIRED_KEYS:
        assert key in env, f"{name} sets no {key}: an empty API_KEYS leaves the API open"
        assert "value" not in env[key], f"{name}: {key} written in the manifest"
        # Not optional: without the Secret's key the pod does not start (CreateContainerConfigError).
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": name, "key": key}
    found = resources()
    assert ("Secret", name) not in found  # created by hand, never committed
    config = found[("ConfigMap", name)]["data"]
    assert not set(config) & {*REQUIRED_KEYS, "MLFLOW_TRACKING_PASSWORD", "MAINTAINER_SECRET"}


def test_the_product_reads_a_tracking_server_with_credentials_from_its_secret() -> None:
    env = env_of("tweet-sentiment-app")
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        # Optional: the default store (sqlite on the volume) needs none.
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "tweet-sentiment-app", "key": key, "optional": True}
