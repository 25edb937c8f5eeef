"""Static checks of the Dockerfiles, .dockerignore and deploy/docker/test.sh; the real build and run is
`make docker-test`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
IMAGES = {"Dockerfile.cpu": ("api", 8000, "/healthz"), "Dockerfile.full": ("app", 8501, "/_stcore/health")}
SECRETS = ("APPLICATIONINSIGHTS_CONNECTION_STRING", "MAINTAINER_SECRET", "API_KEYS")


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of deploy/docker/<dockerfile>, continuation lines joined and comments dropped."""
    text = (DOCKER / dockerfile).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2)) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.MULTILINE)]


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_dockerfile_shape(dockerfile: str) -> None:
    group, port, health = IMAGES[dockerfile]
    steps = instructions(dockerfile)
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = [args for name, args in steps if name == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"], "multi-stage: a build stage, then the runtime"
    runtime = steps[[i for i, (name, _) in enumerate(steps) if name == "FROM"][-1]:]
    assert ("USER", "10001:10001") in runtime
    assert ("EXPOSE", str(port)) in runtime
    healthcheck = next(args for name, args in runtime if name == "HEALTHCHECK")
    assert health in healthcheck and "python" in healthcheck and "curl" not in healthcheck
    assert any(name == "COPY" and args.startswith("--from=build /opt/venv") for name, args in runtime)
    build = " ".join(args for name, args in steps if name in ("COPY", "RUN"))
    assert f"requirements/{group}.txt wheelhous[e]" in build and "--no-index --find-links" in build
    assert "python3 -m venv" in build, "works on python:3.11-slim and on Debian's python3 alike"
    assert "pip check" in build
    for name, args in steps:
        if name in ("ENV", "ARG", "LABEL"):
            assert not any(secret in args for secret in SECRETS), f"{dockerfile}: {name} {args}"
    labels = " ".join(args for name, args in steps if name == "LABEL")
    for key in ("org.opencontainers.image.version", "org.opencontainers.image.source", "tweet-sentiment.model.version"):
        assert key in labels


def test_lean_image_installs_no_heavy_stack() -> None:
    locked = {line.split("==")[0].lower() for line in (ROOT / "requirements/api.txt").read_text().splitlines()
              if re.match(r"^[A-Za-z0-9]", line)}
    assert not locked & {"torch", "transformers", "mlflow", "mlflow-skinny", "streamlit", "pandas", "scikit-learn"}
    copied = [args for name, args in instructions("Dockerfile.cpu") if name == "COPY" and "--from" not in args]
    assert sorted(copied) == ["api/ /app/api/", "exports/ /app/exports/", "requirements/api.txt wheelhous[e] /tmp/wheels/",
                              "sentiment/ /app/sentiment/"]


def test_both_images_copy_the_engine_package() -> None:
    """api/ (and app/) import sentiment/: each image copies it beside api/, and the build context lets it in."""
    for dockerfile in IMAGES:
        copied = [args for name, args in instructions(dockerfile) if name == "COPY" and "--from" not in args]
        assert "api/ /app/api/" in copied and "sentiment/ /app/sentiment/" in copied, dockerfile
    assert (ROOT / "sentiment").is_dir()


def test_full_image_keeps_feedback_on_a_volume() -> None:
    steps = instructions("Dockerfile.full")
    env = " ".join(args for name, args in steps if name == "ENV")
    assert "FEEDBACK_DB=/data/feedback.db" in env
    assert ("VOLUME", '["/data"]') in steps
    assert ("CMD", '["uvicorn", "app.server:app"]') in steps


def test_dockerignore_is_an_allowlist_without_state_or_fp32() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!api/", "!sentiment/", "!app/", "!exports/", "!requirements/", "!wheelhouse/"} <= set(lines)
    # The build context is the repository root: .dockerignore applies there, and nothing of deploy/ is let in.
    assert not [line for line in lines if line.startswith("!deploy")]
    assert not [line for line in lines if line.startswith("!") and line.rstrip("/") in ("!tests", "!data", "!.venv")]
    assert "exports/*/model.fp32.onnx" in lines


def test_test_script_parses() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for script in ("test.sh", "compose.sh"):
        subprocess.run([bash, "-n", str(DOCKER / script)], check=True)


def test_the_scripts_name_files_that_exist() -> None:
    """test.sh runs from the repository root: every deploy/ path it and compose.sh name is there, the Make target
    runs it, and the host stack is named with -f (which leaves compose.override.yaml's published ports out)."""
    scripts = {name: (DOCKER / name).read_text() for name in ("test.sh", "compose.sh")}
    assert 'cd "$(dirname "$0")/../.."' in scripts["test.sh"]
    named = set()
    for text in scripts.values():
        named |= set(re.findall(r"(?<![\w/.])deploy/[\w./-]*[\w]", text))
    assert {"deploy/docker/Dockerfile.cpu", "deploy/docker/Dockerfile.full", "deploy/docker/mlflow.Dockerfile",
            "deploy/docker/smoke.py", "deploy/docker/compose_smoke.py", "deploy/docker/compose.sh",
            "deploy/compose/compose.yaml", "deploy/compose/compose.host.yaml"} <= named
    assert [path for path in sorted(named) if not (ROOT / path).exists()] == []
    assert "-f deploy/compose/compose.yaml -f deploy/compose/compose.host.yaml" in scripts["compose.sh"]
    assert "compose.override.yaml" not in scripts["compose.sh"].split("COMPOSE_FILES=", 1)[1]
    assert re.search(r"^docker-test:.*\n\tbash deploy/docker/test\.sh$", (ROOT / "Makefile").read_text(), re.MULTILINE)


def test_both_images_choose_the_same_exports_and_leave_out_only_mpnet(tmp_path: Path) -> None:
    """The EXPORTS build argument: every committed model but the opt-in mpnet, and `select` accepts the list."""
    from sentiment.manifest import read_manifest
    from sentiment.publish import select

    arguments = set()
    for dockerfile in IMAGES:
        steps = instructions(dockerfile)
        arguments |= {args for name, args in steps if name == "ARG" and args.startswith("EXPORTS=")}
        assert any(name == "RUN" and "sentiment.publish select" in args and '--keep "$EXPORTS"' in args for name, args in steps)
    assert len(arguments) == 1, arguments
    chosen = arguments.pop().removeprefix("EXPORTS=").strip('"').split()
    committed = {p.parent.name for p in (ROOT / "exports").glob("*/metadata.json")}
    assert set(chosen) == committed - {"mpnet"}
    # The build step on a copy of the committed manifest and metadata (not the weights: select never opens them).
    for folder in committed:
        (tmp_path / folder).mkdir()
        shutil.copy(ROOT / "exports" / folder / "metadata.json", tmp_path / folder)
    if (ROOT / "exports" / "manifest.json").exists():
        shutil.copy(ROOT / "exports" / "manifest.json", tmp_path)
    selected = select(tmp_path, chosen, repick_champion=True)
    assert set(selected.models) == set(chosen) and selected.champion in chosen
    assert read_manifest(tmp_path) == selected and not (tmp_path / "mpnet").exists()


@pytest.mark.parametrize(("env", "code"), [({}, 0), ({"DOCKER_TEST_REQUIRED": "1"}, 1),
                                           ({"DOCKER_TEST_REQUIRED": "1", "DOCKER_TEST_ALLOW_SKIP": "1"}, 0)])
def test_a_skip_fails_where_docker_test_is_required(env: dict[str, str], code: int) -> None:
    script = (DOCKER / "test.sh").read_text()
    skip = re.search(r"^skip\(\) \{\n.*?^\}\n", script, re.MULTILINE | re.DOTALL).group(0)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_TEST_")}
    result = subprocess.run(["bash", "-c", skip + "skip 'no engine here'"], capture_output=True, text=True,
                            env=clean | env)
    assert result.returncode == code and "SKIPPED" in result.stdout
    assert ("DOCKER_TEST_ALLOW_SKIP=1" in result.stderr) == (code == 1)


def test_ci_requires_docker_test() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "DOCKER_TEST_REQUIRED=1 make docker-test" in ci
