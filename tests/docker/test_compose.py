"""Static checks of deploy/compose (compose.yaml, compose.override.yaml, compose.host.yaml), the MLflow image's
authentication and the nginx configurations; the stack itself runs in `make docker-test` (deploy/docker/compose.sh).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
DOCKER = ROOT / "deploy" / "docker"
sys.path.insert(0, str(DOCKER))
import compose_smoke  # noqa: E402  (deploy/docker/ is scripts, not a package)

sys.path.insert(0, str(COMPOSE))
import mlflow_users  # noqa: E402

# What compose.yaml requires: without any of them docker-compose refuses to start (no default to fall back on).
REQUIRED = ("API_KEYS", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_READER_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
OPTIONAL = ("MAINTAINER_SECRET", "APPLICATIONINSIGHTS_CONNECTION_STRING")
HOST_FILES = ["compose.yaml", "compose.host.yaml"]


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
    assert services["mlflow-seed"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["mlflow-seed"]["command"][-1].endswith("python -m app.runs")
    assert services["app"]["depends_on"]["mlflow-seed"]["condition"] == "service_completed_successfully"
    assert "mlflow-data:/mlflow" in services["mlflow"]["volumes"] and "app-data:/data" in services["app"]["volumes"]
    for name in ("api", "app"):
        assert services[name]["read_only"] is True and services[name]["cap_drop"] == ["ALL"]
    # Optional secrets only from the caller's environment (the required ones: the tests below).
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if key in OPTIONAL:
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
    assert host["mlflow-seed"]["environment"]["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{ports['mlflow']}"
    # The checks of deploy/docker/compose_smoke.py ask the same ports.
    for name, url in compose_smoke.READY.items():
        assert url.startswith(f"http://127.0.0.1:{ports[name]}/"), (name, url)


def required(variable: str) -> re.Pattern[str]:
    """``${VARIABLE:?message}``: Compose refuses to start when the variable is unset or empty."""
    return re.compile(rf"^\$\{{{variable}:\?[^}}]+\}}$")


def environments(*names: str) -> Iterator[tuple[str, str, str]]:
    """(file, service, KEY=value) of every environment entry in the compose files named."""
    for name in names:
        for service_name, service in load(name)["services"].items():
            for key, value in (service.get("environment") or {}).items():
                yield name, service_name, f"{key}={value}"


def test_the_api_keys_are_required_wherever_compose_publishes_the_api() -> None:
    """Audit: compose.yaml defaulted API_KEYS to empty (an open API) while publishing it on 0.0.0.0:8000, and the
    product's /api on 8501 had no key at all."""
    published = load("compose.override.yaml")["services"]
    both = load("compose.yaml")["services"]
    host = load("compose.host.yaml")["services"]
    for name in ("proxy", "app"):  # what the override publishes on every interface
        assert not published[name]["ports"][0].startswith("127.0.0.1:")
    # Every service that runs the API (the lean replicas, the product's /api) requires the keys.
    for name, service in [("api", both["api"]), ("app", both["app"]), ("api-2", host["api-2"])]:
        value = (service.get("environment") or {}).get("API_KEYS", "")
        assert required("API_KEYS").match(value), f"{name}: API_KEYS is {value!r}, not required"
    leaked = [entry for entry in environments(*HOST_FILES, "compose.override.yaml")
              if entry[2].split("=", 1)[0] in REQUIRED + ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRACKING_PASSWORD")
              and not required(r"\w+").match(entry[2].split("=", 1)[1])]
    assert leaked == [], "a secret with a default or a literal value"


def test_mlflow_asks_everyone_for_credentials_and_the_product_reads_only() -> None:
    """Audit: the Compose MLflow server had no authentication; anyone reaching it could move the champion alias."""
    services = load("compose.yaml")["services"]
    mlflow = services["mlflow"]["environment"]
    assert required("MLFLOW_ADMIN_PASSWORD").match(mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"])
    assert required("MLFLOW_FLASK_SERVER_SECRET_KEY").match(mlflow["MLFLOW_FLASK_SERVER_SECRET_KEY"])
    # The seed writes as the admin and gives the product its read-only user; the product reads with that user.
    seed, app = services["mlflow-seed"]["environment"], services["app"]["environment"]
    assert seed["MLFLOW_TRACKING_USERNAME"] == "admin" == compose_smoke.ADMIN
    assert required("MLFLOW_ADMIN_PASSWORD").match(seed["MLFLOW_TRACKING_PASSWORD"])
    assert seed["MLFLOW_READER_USERNAME"] == app["MLFLOW_TRACKING_USERNAME"] == compose_smoke.READER
    assert required("MLFLOW_READER_PASSWORD").match(seed["MLFLOW_READER_PASSWORD"])
    assert required("MLFLOW_READER_PASSWORD").match(app["MLFLOW_TRACKING_PASSWORD"])
    assert "python /opt/compose/mlflow_users.py &&" in services["mlflow-seed"]["command"][-1]
    (volume,) = services["mlflow-seed"]["volumes"]
    assert volume == "./mlflow_users.py:/opt/compose/mlflow_users.py:ro" and (COMPOSE / "mlflow_users.py").is_file()
    # Still never offered to the network: loopback only, and not at all on the host network.
    assert load("compose.override.yaml")["services"]["mlflow"]["ports"] == ["127.0.0.1:5000:5000"]
    # The image runs MLflow's basic-auth app, its users beside the runs in the volume; every user reads.
    dockerfile = (DOCKER / "mlflow.Dockerfile").read_text()
    (command,) = re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert json.loads(command)[-1].endswith("--app-name basic-auth")
    assert "MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow-auth.ini" in dockerfile
    for line in ("'default_permission = READ'", "'database_uri = sqlite:////mlflow/basic_auth.db'",
                 "'admin_username = admin'", "> /etc/mlflow-auth.ini"):
        assert line in dockerfile
    assert "MLFLOW_AUTH_ADMIN_PASSWORD=" not in dockerfile and "MLFLOW_FLASK_SERVER_SECRET_KEY=" not in dockerfile


def test_the_mlflow_image_locks_the_auth_extra() -> None:
    """Every requirement of mlflow's `auth` extra is in requirements/mlflow-server.txt, at a version it allows."""
    locked = {Requirement(line.split()[0]).name.lower(): line.split("==")[1].strip()
              for line in (ROOT / "requirements" / "mlflow-server.txt").read_text().splitlines()
              if re.match(r"^[A-Za-z0-9].*==", line)}
    version = importlib.metadata.version("mlflow")
    assert locked["mlflow"] == version
    auth = [Requirement(r) for r in importlib.metadata.requires("mlflow") or []
            if Requirement(r).marker is not None and Requirement(r).marker.evaluate({"extra": "auth"})]
    assert auth, "mlflow declares an auth extra"
    for requirement in auth:
        name = requirement.name.lower()
        assert name in locked, f"{requirement} (mlflow[auth]) is not locked"
        assert requirement.specifier.contains(locked[name]), f"{name}=={locked[name]} does not satisfy {requirement}"


compose_cli = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                 reason="docker-compose is not installed (make docker-test installs Debian's 1.29)")


def docker_compose(files: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config -q` from the repository root, as deploy/compose/compose.sh names the files, with
    exactly the variables of ``env`` (an empty --env-file keeps a deploy/compose/.env out)."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    command = ["docker-compose", "--env-file", str(empty), *[a for f in files for a in ("-f", f"deploy/compose/{f}")],
               "config", "-q"]
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED + OPTIONAL}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=clean | env)


@compose_cli
@pytest.mark.parametrize("files", [["compose.yaml", "compose.override.yaml"], HOST_FILES], ids=["bridge", "host"])
def test_docker_compose_accepts_the_files(files: list[str], tmp_path: Path) -> None:
    done = docker_compose(files, {name: "a-secret-value-for-the-test" for name in REQUIRED}, tmp_path)
    assert done.returncode == 0, done.stderr


@compose_cli
@pytest.mark.parametrize("missing", REQUIRED)
def test_docker_compose_refuses_to_start_without_each_secret(missing: str, tmp_path: Path) -> None:
    for value in (None, ""):
        env = {name: "a-secret-value-for-the-test" for name in REQUIRED if name != missing}
        if value is not None:
            env[missing] = value
        done = docker_compose(["compose.yaml", "compose.override.yaml"], env, tmp_path)
        assert done.returncode != 0 and f"set {missing}" in done.stderr, done.stderr
        assert "a-secret-value-for-the-test" not in done.stderr + done.stdout


# -- the reader user (deploy/compose/mlflow_users.py) ------------------------------------------------------------
class FakeUsers:
    """MLflow's users API as the admin sees it: a dict of users, answers as the server gives them."""

    def __init__(self, users: dict[str, dict[str, Any]] | None = None, refuse: int | None = None) -> None:
        self.users = users or {}
        self.refuse = refuse
        self.calls: list[tuple[str, str]] = []

    def __call__(self, method: str, path: str, payload: dict[str, Any] | None) -> tuple[int, Any]:
        self.calls.append((method, path))
        if self.refuse:
            return self.refuse, {"error_code": "UNAUTHENTICATED"}
        name = (payload or {})["username"]
        if path.endswith("/get"):
            return (200, {"user": self.users[name]}) if name in self.users else (404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
        if len(payload["password"]) < 12:
            return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Password must be at least 12 characters."}
        self.users.setdefault(name, {"username": name, "is_admin": False})["password"] = payload["password"]
        return 200, {}


def test_the_reader_is_created_then_given_the_password_of_the_environment() -> None:
    server = FakeUsers()
    assert mlflow_users.ensure_reader(server, "reader", "first-password-1") == "created"
    assert mlflow_users.ensure_reader(server, "reader", "second-password-2") == "password set"
    assert server.users["reader"] == {"username": "reader", "is_admin": False, "password": "second-password-2"}
    assert [c[0] for c in server.calls] == ["GET", "POST", "GET", "PATCH"]


@pytest.mark.parametrize(("server", "message"), [
    (FakeUsers({"reader": {"username": "reader", "is_admin": True}}), "is an admin"),
    (FakeUsers(refuse=401), "HTTP 401"),
    (FakeUsers(), "INVALID_PARAMETER_VALUE"),
])
def test_the_reader_script_refuses_loudly_and_never_shows_a_password(server: FakeUsers, message: str,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(mlflow_users, "http_sender", lambda *args: server)
    environ = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "MLFLOW_TRACKING_USERNAME": "admin",
               "MLFLOW_TRACKING_PASSWORD": "admin-pass-word", "MLFLOW_READER_PASSWORD": "tiny-pw"}
    with caplog.at_level(logging.INFO):
        assert mlflow_users.main(environ) == 1
    shown = caplog.text + "".join(capsys.readouterr())
    assert message in shown and "admin-pass-word" not in shown and "tiny-pw" not in shown


# -- the live check of compose_smoke.py, against a server that answers everyone (MLflow before basic-auth) --------
@pytest.fixture
def open_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """An HTTP server on 127.0.0.1 that answers 200 to everything, as the unauthenticated MLflow did; the check's
    MLflow URL points at it. Yields the Authorization headers it received."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_DELETE = do_PATCH = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(compose_smoke, "MLFLOW", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_compose_check_fails_on_an_mlflow_that_lets_anyone_write(open_mlflow: list[str]) -> None:
    failures: list[str] = []
    codes = compose_smoke.check_mlflow_auth({"api_key": "k", "admin": "admin-password", "reader": "reader-pass"},
                                            failures)
    assert codes["anonymous_create_model"] == 200 == codes["reader_set_alias"]
    assert "MLflow anonymous create model: HTTP 200, expected 401" in failures
    assert "MLflow reader set alias: HTTP 200, expected 403" in failures
    assert not any("admin-password" in f or "reader-pass" in f for f in failures)
    assert "" in open_mlflow and any(h.startswith("Basic ") for h in open_mlflow)


def test_the_compose_check_takes_its_secrets_from_the_environment_only() -> None:
    with pytest.raises(compose_smoke.CheckFailed, match="MLFLOW_READER_PASSWORD"):
        compose_smoke.stack_credentials({"API_KEYS": "k1,k2", "MLFLOW_ADMIN_PASSWORD": "a"})
    found = compose_smoke.stack_credentials({"API_KEYS": " k1 ,k2", "MLFLOW_ADMIN_PASSWORD": "a",
                                             "MLFLOW_READER_PASSWORD": "r"})
    assert found == {"api_key": "k1", "admin": "a", "reader": "r"}
    script = (DOCKER / "compose.sh").read_text()
    assert re.search(r"COMPOSE_REQUIRED=\((.*)\)", script).group(1).split() == list(REQUIRED)
    assert 'with_secrets "$PY" deploy/docker/compose_smoke.py check' in script


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
