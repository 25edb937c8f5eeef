"""Static checks of deploy/compose (compose.yaml, compose.override.yaml, compose.host.yaml) and the nginx
configurations; the stack itself runs in `make docker-test` (deploy/docker/compose.sh)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
DOCKER = ROOT / "deploy" / "docker"
sys.path.insert(0, str(DOCKER))
import compose_smoke  # noqa: E402  (deploy/docker/ is scripts, not a package)


def load(name: str) -> dict:
    return yaml.safe_load((COMPOSE / name).read_text(encoding="utf-8"))


def build_files(service: dict) -> tuple[Path, Path]:
    """(context, Dockerfile) of a service's build section, resolved as Compose does: the context against the
    folder of the compose files, the Dockerfile against the context."""
    context = (COMPOSE / service["build"]["context"]).resolve()
    return context, context / service["build"]["dockerfile"]


def mounted_file(service: dict) -> Path:
    """The host side of a service's one bind-mounted file, resolved against the folder of the compose files."""
    (volume,) = service["volumes"]
    return (COMPOSE / volume.split(":")[0]).resolve()


def test_the_stack_of_the_seed_on_bridge_networks() -> None:
    services = load("compose.yaml")["services"]
    assert set(services) == {"mlflow", "mlflow-seed", "api", "proxy", "app"}
    assert not any("network_mode" in s for s in services.values()), "compose.yaml is for an ordinary engine"
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["app"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["mlflow-seed"]["command"][-1] == "http://mlflow:5000"
    assert services["app"]["depends_on"]["mlflow-seed"]["condition"] == "service_completed_successfully"
    assert "mlflow-data:/mlflow" in services["mlflow"]["volumes"] and "app-data:/data" in services["app"]["volumes"]
    for name in ("api", "app"):
        assert services[name]["read_only"] is True and services[name]["cap_drop"] == ["ALL"]
    # Secrets only from the caller's environment.
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if key in ("API_KEYS", "MAINTAINER_SECRET", "APPLICATIONINSIGHTS_CONNECTION_STRING"):
                assert value == f"${{{key}:-}}", f"{key} must come from the environment"
    # Every image builds from the repository root (where .dockerignore is), with its Dockerfile in deploy/docker.
    for name, dockerfile in (("mlflow", "mlflow.Dockerfile"), ("api", "Dockerfile.cpu"), ("app", "Dockerfile.full")):
        assert build_files(services[name]) == (ROOT, DOCKER / dockerfile), name
        assert (DOCKER / dockerfile).is_file()
    assert mounted_file(services["proxy"]) == DOCKER / "nginx.conf"
    nginx = (DOCKER / "nginx.conf").read_text()
    assert "server api:8000;" in nginx and "listen 8080;" in nginx
    published = load("compose.override.yaml")["services"]
    # MLflow on loopback only (audit: published on every interface, without authentication, it let anyone move the
    # champion alias that alias-following services serve).
    assert published == {"mlflow": {"ports": ["127.0.0.1:5000:5000"]}, "proxy": {"ports": ["8000:8080"]},
                         "app": {"ports": ["8501:8501"]}}


def test_the_host_override_gives_every_service_its_own_port() -> None:
    base, host = load("compose.yaml")["services"], load("compose.host.yaml")["services"]
    assert set(host) == set(base) | {"api-2"}
    assert all(service["network_mode"] == "host" for service in host.values())
    assert not any("ports" in service for service in [*base.values(), *host.values()]), \
        "docker-compose refuses port bindings with network_mode host: ports live in compose.override.yaml"
    assert host["api"]["deploy"]["replicas"] == 1
    ports = {"mlflow": host["mlflow"]["environment"]["MLFLOW_PORT"], "api-1": host["api"]["environment"]["UVICORN_PORT"],
             "api-2": host["api-2"]["environment"]["UVICORN_PORT"], "app": host["app"]["environment"]["UVICORN_PORT"]}
    assert mounted_file(host["proxy"]) == DOCKER / "nginx.host.conf"
    nginx = (DOCKER / "nginx.host.conf").read_text()
    (proxy_port,) = re.findall(r"listen 127\.0\.0\.1:(\d+);", nginx)
    ports["proxy"] = proxy_port
    assert len(set(ports.values())) == len(ports)
    assert re.findall(r"server 127\.0\.0\.1:(\d+);", nginx) == [ports["api-1"], ports["api-2"]]
    assert host["app"]["environment"]["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{ports['mlflow']}"
    # The checks of deploy/docker/compose_smoke.py ask the same ports.
    for name, url in compose_smoke.READY.items():
        assert url.startswith(f"http://127.0.0.1:{ports[name]}/"), (name, url)


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose is not installed (make docker-test installs Debian's 1.29)")
@pytest.mark.parametrize("files", [["compose.yaml", "compose.override.yaml"], ["compose.yaml", "compose.host.yaml"]],
                         ids=["bridge", "host"])
def test_docker_compose_accepts_the_files(files: list[str]) -> None:
    # Named from the repository root, as deploy/docker/compose.sh does.
    command = ["docker-compose", *[arg for f in files for arg in ("-f", f"deploy/compose/{f}")], "config", "-q"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("conf", ["nginx.conf", "nginx.host.conf"])
def test_nginx_retries_posts_bounds_slow_clients_and_rate_limits(conf: str) -> None:
    """Audit: a 503 on POST was never retried on the other replica (every predict route is a POST)."""
    text = (ROOT / "deploy" / "docker" / conf).read_text()
    directives = {line.split()[0]: line.split()[1:] for line in
                  (raw.split("#")[0].strip().rstrip(";") for raw in text.splitlines()) if line}
    assert {"error", "timeout", "http_503", "non_idempotent"} <= set(directives["proxy_next_upstream"])
    assert directives["client_header_timeout"] and directives["client_body_timeout"]
    assert directives["limit_req"][0] == "zone=per_client" and directives["limit_req_status"] == ["429"]
    assert directives["limit_req_zone"][:2] == ["$binary_remote_addr", "zone=per_client:10m"]
