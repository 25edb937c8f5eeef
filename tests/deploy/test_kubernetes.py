"""deploy/kubernetes: every manifest validated offline against the Kubernetes schemas, then read for the
promises the schemas cannot check (probes, security, resources, names that must match).

``kubernetes_validate.validate`` is called directly, in strict mode (unknown fields are errors): its command
line only warns, and exits 0, on a kind it has no schema for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest release the manifests claim (README, "Deploy") and the newest schemas the package ships.
VERSIONS = ["1.25.0", all_versions()[-1]]


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def resources() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} is defined twice"
            found[key] = doc
    return found


def test_the_manifests_are_there_and_kustomize_lists_each() -> None:
    assert [p.name for p in MANIFESTS] == ["api.yaml", "app.yaml"]
    kustomization = documents(DEPLOY / "kustomization.yaml")[0]
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_resource_validates_strictly(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no resource"
    for doc in docs:
        # Raises ValidationError, SchemaNotFoundError (unknown kind or apiVersion) or VersionNotSupportedError.
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_is_not_quiet_about_mistakes() -> None:
    deployment = resources()[("Deployment", "tweet-sentiment-api")]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    with pytest.raises(kubernetes_validate.utils.SchemaNotFoundError):
        kubernetes_validate.validate({**deployment, "kind": "Deploymnt"}, VERSIONS[-1], strict=True)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("name", ["tweet-sentiment-api", "tweet-sentiment-app"])
def test_pods_are_locked_down_and_bounded(name: str) -> None:
    deployment = resources()[("Deployment", name)]
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert main["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                       "capabilities": {"drop": ["ALL"]}}
    assert pod["automountServiceAccountToken"] is False
    for kind in ("requests", "limits"):
        assert set(main["resources"][kind]) == {"cpu", "memory"}
    assert main["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    port = str(main["ports"][0]["containerPort"])
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == port
    # Every pod label selector matches the pod template.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = resources()[("Service", name)]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == main["ports"][0]["name"]
    config = main["envFrom"][0]["configMapRef"]["name"]
    assert ("ConfigMap", config) in resources()


def test_the_api_probes_scales_and_keeps_one_pod() -> None:
    found = resources()
    main = container(found[("Deployment", "tweet-sentiment-api")])
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for name in ("API_KEYS", "ADMIN_KEY"):  # without ADMIN_KEY, any API key holder could make every pod reload
        variable = next(e for e in main["env"] if e["name"] == name)
        assert variable["valueFrom"]["secretKeyRef"] == {"name": "tweet-sentiment-api", "key": name}
    assert ("Secret", "tweet-sentiment-api") not in found  # created by hand, never committed
    hpa = found[("HorizontalPodAutoscaler", "tweet-sentiment-api")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "tweet-sentiment-api"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = found[("PodDisruptionBudget", "tweet-sentiment-api")]
    assert pdb["spec"]["selector"] == found[("Deployment", "tweet-sentiment-api")]["spec"]["selector"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    config = found[("ConfigMap", "tweet-sentiment-api")]["data"]
    # One worker per core, one ONNX thread each: workers x threads = the CPU limit, never more.
    assert int(config["WEB_CONCURRENCY"]) * int(config["ONNX_THREADS"]) == int(main["resources"]["limits"]["cpu"])


def test_the_product_is_one_pod_on_its_volume() -> None:
    found = resources()
    deployment = found[("Deployment", "tweet-sentiment-app")]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert ("HorizontalPodAutoscaler", "tweet-sentiment-app") not in found
    pod = deployment["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v["name"] == "data")["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in found
    mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
    assert mounts["/data"] == "data"
    config = found[("ConfigMap", "tweet-sentiment-app")]["data"]
    assert config["FEEDBACK_DB"].startswith("/data/")
    assert container(deployment)["readinessProbe"]["httpGet"]["path"] == "/api/readyz"
