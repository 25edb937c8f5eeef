"""HTTP checks of the running containers, and the results files; run by ``deploy/docker/test.sh`` on the host.

Standard library only (the host needs no project install). Each check command prints one JSON object on
stdout and exits 1 with the reasons on stderr when a check fails.

    python3 deploy/docker/smoke.py startup CONTAINER T0 HEALTH_URL READY_URL  # seconds from T0 to up/healthy/ready
    python3 deploy/docker/smoke.py lean BASE_URL                # the lean API: labels, batch, 4xx on bad input
    python3 deploy/docker/smoke.py full BASE_URL                # the product: UI, Streamlit health, /api predict
    python3 deploy/docker/smoke.py report FACTS_JSON RESULTS_DIR
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Clear cases written for this test (not taken from any data set).
CLEAR_TWEETS = (
    ("I absolutely love this airline! The crew was so friendly and the flight was perfect. Thank you!", "positive"),
    ("Best day ever, got upgraded to first class and the food was amazing :)", "positive"),
    ("What a wonderful, smooth flight. Great service, very happy customer!", "positive"),
    ("Worst airline ever. Five hour delay, rude staff and they lost my luggage. Never again.", "negative"),
    ("I hate this. Cancelled flight, no refund, no help, terrible customer service.", "negative"),
    ("So sad and angry right now, my bag is gone and nobody cares", "negative"),
)
# (what, method, path, body, content type, expected status: an exact code, or None for any 4xx)
BAD_REQUESTS: tuple[tuple[str, str, str, bytes, str, int | None], ...] = (
    ("empty text", "POST", "/v1/predict", b'{"text": ""}', "application/json", 422),
    ("blank text", "POST", "/v1/predict", b'{"text": "   "}', "application/json", 422),
    ("number as text", "POST", "/v1/predict", b'{"text": 42}', "application/json", 422),
    ("no text field", "POST", "/v1/predict", b"{}", "application/json", 422),
    ("unknown field", "POST", "/v1/predict", b'{"text": "ok", "lang": "en"}', "application/json", 422),
    ("malformed JSON", "POST", "/v1/predict", b'{"text": "ok"', "application/json", None),
    ("text/plain body", "POST", "/v1/predict", b"I love it", "text/plain", 415),
    ("unknown model", "POST", "/v1/predict", b'{"text": "ok", "model": "no-such-model"}', "application/json", 404),
    ("text too long", "POST", "/v1/predict", json.dumps({"text": "a" * 5000}).encode(), "application/json", 422),
    ("empty batch", "POST", "/v1/predict/batch", b'{"texts": []}', "application/json", 422),
    ("batch of 257", "POST", "/v1/predict/batch", json.dumps({"texts": ["fine"] * 257}).encode(),
     "application/json", 422),
    ("batch with an empty text", "POST", "/v1/predict/batch", b'{"texts": ["good", ""]}', "application/json", 422),
    ("GET on a POST route", "GET", "/v1/predict", b"", "", 405),
)


class CheckFailed(AssertionError):
    pass


def request(url: str, *, method: str = "GET", body: bytes | None = None, content_type: str = "",
            timeout: float = 30.0) -> tuple[int, bytes, str]:
    """One HTTP exchange: (status, body, content type); HTTP errors are answers, not exceptions."""
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=body if method != "GET" else None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def post_json(url: str, payload: Any) -> tuple[int, Any]:
    status, body, _ = request(url, method="POST", body=json.dumps(payload).encode(), content_type="application/json")
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        return status, body.decode("utf-8", "replace")


def _docker_state(container: str) -> tuple[str, str]:
    """(container status, health status) from ``docker inspect``."""
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}"
                          "{{else}}none{{end}}", container], capture_output=True, text=True, check=False)
    status, _, health = out.stdout.strip().partition(" ")
    return status or "missing", health


def startup(container: str, t0: float, health_url: str, ready_url: str, timeout: float,
            created: float | None = None) -> dict[str, float]:
    """Seconds from ``t0`` (just before ``docker run``, or its ``docker create`` half) until HTTP answers, Docker
    says healthy and the models are ready; with ``created`` (the time ``docker create`` returned), also the
    create time and the time from ``docker start`` to healthy.

    Polls every 0.1 s; fails when the container stops or ``timeout`` passes first.
    """
    seen: dict[str, float] = {}
    while time.time() - t0 < timeout:
        status, health = _docker_state(container)
        if status not in ("created", "running"):
            raise CheckFailed(f"container {container} is {status} (health {health})")
        now = time.time() - t0
        if health == "healthy":
            seen.setdefault("run_to_healthy_s", now)
        for key, url in (("run_to_http_s", health_url), ("run_to_ready_s", ready_url)):
            if key not in seen:
                try:
                    if request(url, timeout=1)[0] == 200:
                        seen[key] = time.time() - t0
                except OSError:
                    pass
        if len(seen) == 3:
            if created is not None:
                seen["create_s"] = created - t0
                seen["start_to_healthy_s"] = seen["run_to_healthy_s"] - seen["create_s"]
            return {key: round(value, 2) for key, value in seen.items()}
        time.sleep(0.1)
    raise CheckFailed(f"{container}: after {timeout:.0f} s only {sorted(seen) or 'nothing'} of HTTP up, healthy, "
                      f"ready (health: {_docker_state(container)[1]})")


def expect(condition: bool, message: str, failures: list[str]) -> None:
    if not condition:
        failures.append(message)


def check_predictions(base: str, failures: list[str]) -> dict[str, Any]:
    """/v1/predict on each clear tweet, /v1/predict/batch on all, the original /predict on one."""
    labels = {}
    for text, want in CLEAR_TWEETS:
        status, body = post_json(f"{base}/v1/predict", {"text": text})
        expect(status == 200, f"/v1/predict {text[:30]!r}: HTTP {status} {body}", failures)
        if status == 200:
            labels[text] = body["label"]
            expect(body["label"] == want, f"/v1/predict {text!r}: {body['label']}, expected {want}", failures)
            expect(abs(body["probabilities"]["negative"] + body["probabilities"]["positive"] - 1) < 1e-3,
                   f"/v1/predict: probabilities do not sum to 1: {body['probabilities']}", failures)
    texts = [text for text, _ in CLEAR_TWEETS]
    status, body = post_json(f"{base}/v1/predict/batch", {"texts": texts})
    expect(status == 200, f"/v1/predict/batch: HTTP {status} {body}", failures)
    batch_labels = []
    if status == 200:
        batch_labels = [p["label"] for p in body["predictions"]]
        expect(body["count"] == len(texts), f"/v1/predict/batch: count {body['count']} for {len(texts)} texts", failures)
        expect(batch_labels == [want for _, want in CLEAR_TWEETS],
               f"/v1/predict/batch labels {batch_labels}, expected {[w for _, w in CLEAR_TWEETS]}", failures)
    status, body = post_json(f"{base}/predict", {"text": CLEAR_TWEETS[0][0]})
    expect(status == 200 and body.get("prediction") == 4, f"original /predict: HTTP {status} {body}", failures)
    return {"single": len(labels), "batch": batch_labels}


def check_lean(base: str) -> dict[str, Any]:
    failures: list[str] = []
    status, body = post_json(f"{base}/v1/predict", {"text": "warm"})  # waits for the models (READY_TIMEOUT_S)
    status, models_body, _ = request(f"{base}/v1/models")
    expect(status == 200, f"/v1/models: HTTP {status}", failures)
    models = json.loads(models_body) if status == 200 else {}
    predictions = check_predictions(base, failures)
    # Every served model on the same tweets, for the record (only the default model's labels are required).
    per_model = {}
    for model in models.get("models", []):
        status, body = post_json(f"{base}/v1/predict/batch", {"texts": [t for t, _ in CLEAR_TWEETS], "model": model["name"]})
        expect(status == 200, f"/v1/predict/batch with model {model['name']}: HTTP {status} {body}", failures)
        if status == 200:
            per_model[model["name"]] = sum(p["label"] == want for p, (_, want) in zip(body["predictions"], CLEAR_TWEETS, strict=True))
    rejected = {}
    for what, method, path, payload, content_type, want in BAD_REQUESTS:
        status, answer, _ = request(f"{base}{path}", method=method, body=payload, content_type=content_type)
        rejected[what] = status
        ok = 400 <= status < 500 and (want is None or status == want)
        expect(ok, f"bad input '{what}': HTTP {status} (expected {want or '4xx'}): {answer[:200]!r}", failures)
    status, _, _ = request(f"{base}/healthz")
    expect(status == 200, f"/healthz after the bad inputs: HTTP {status}", failures)
    status, metrics, _ = request(f"{base}/metrics")
    expect(status == 200, f"/metrics: HTTP {status}", failures)
    if failures:
        raise CheckFailed("\n".join(failures))
    return {"default_model": models.get("default"), "models": [m["name"] for m in models.get("models", [])],
            "model_versions": {m["name"]: m["version"] for m in models.get("models", [])},
            "clear_tweets": len(CLEAR_TWEETS), "predictions": predictions, "right_per_model": per_model,
            "rejected": rejected}


def check_full(base: str) -> dict[str, Any]:
    failures: list[str] = []
    status, page, content_type = request(f"{base}/")
    expect(status == 200 and "text/html" in content_type, f"GET /: HTTP {status} {content_type}", failures)
    expect(b"<noscript>" in page.lower() or b"streamlit" in page.lower(), "GET /: not the Streamlit page", failures)
    status, health, _ = request(f"{base}/_stcore/health")
    expect(status == 200 and health.strip() == b"ok", f"/_stcore/health: HTTP {status} {health[:100]!r}", failures)
    status, _, _ = request(f"{base}/api/healthz")
    expect(status == 200, f"/api/healthz: HTTP {status}", failures)
    status, body = post_json(f"{base}/api/v1/predict", {"text": CLEAR_TWEETS[3][0]})
    expect(status == 200 and body.get("label") == "negative", f"/api/v1/predict: HTTP {status} {body}", failures)
    prediction = body if status == 200 else {}
    status, body = post_json(f"{base}/api/v1/predict", {"text": ""})
    expect(status == 422, f"/api/v1/predict with an empty text: HTTP {status}", failures)
    status, _, _ = request(f"{base}/api/docs")
    expect(status == 200, f"/api/docs: HTTP {status}", failures)
    if failures:
        raise CheckFailed("\n".join(failures))
    return {"prediction": {**prediction, "text": CLEAR_TWEETS[3][0]}}


def _mb(size: float | None) -> str:
    return "–" if size is None else f"{size:.0f} MB"


def write_report(facts_path: Path, results: Path) -> None:
    """results/docker.json (every fact) and results/docker.md (the table for people)."""
    facts = json.loads(facts_path.read_text())
    results.mkdir(parents=True, exist_ok=True)
    (results / "docker.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    lean, full, targets = facts["lean"], facts["full"], facts["targets"]

    # Under vfs, creating a container copies the whole image: the start-time target then counts from `docker start`.
    timed = "start_to_healthy_s" if facts["storage_driver"] == "vfs" and "start_to_healthy_s" in lean else "run_to_healthy_s"
    vfs_note = f", from `docker start` under vfs: {lean[timed]:.1f} s" if timed != "run_to_healthy_s" else ""

    def verdict(value: float | None, limit: float) -> str:
        return "–" if value is None else ("✅" if value <= limit else "❌ over target")

    lines = [
        "# Docker images: sizes and start times",
        "",
        f"Measured by `make docker-test` ({facts['measured_at']}, commit `{facts['commit'][:12]}`, "
        f"Docker engine {facts['engine']}, storage driver {facts['storage_driver']}, {facts['cpus']} CPUs).",
        f"Base image `{facts['base_image']}`: {facts['base_kind']}, {_mb(facts['base_size_mb'])}.",
        "Sizes are `docker image inspect` sizes in MB (10^6 bytes), minus the base image.",
        "",
        "| image | size above base | target | `docker run` → healthy (Docker) | → health route answers | → models ready (`readyz`) |",
        "|---|---|---|---|---|---|",
        f"| `{lean['tag']}` (Dockerfile.cpu) | {_mb(lean['size_above_base_mb'])} "
        f"{verdict(lean['size_above_base_mb'], targets['lean_mb'])} | ≤ {targets['lean_mb']:g} MB | "
        f"{lean['run_to_healthy_s']:.1f} s {verdict(lean[timed], targets['lean_healthy_s'])} "
        f"(target ≤ {targets['lean_healthy_s']:g} s{vfs_note}) | {lean['run_to_http_s']:.1f} s | {lean['run_to_ready_s']:.1f} s |",
        f"| `{full['tag']}` (Dockerfile.full) | {_mb(full['size_above_base_mb'])} "
        f"{verdict(full['size_above_base_mb'], targets['full_mb'])} | ≤ {targets['full_mb']:g} MB | "
        f"{full['run_to_healthy_s']:.1f} s | {full['run_to_http_s']:.1f} s | {full['run_to_ready_s']:.1f} s |",
        "",
        f"`docker run` is timed as `docker create` (lean {lean.get('create_s', 0):.1f} s, full "
        f"{full.get('create_s', 0):.1f} s: the storage driver preparing the file system) plus `docker start`; "
        f"from `docker start` to healthy: lean {lean.get('start_to_healthy_s', 0):.1f} s, "
        f"full {full.get('start_to_healthy_s', 0):.1f} s.",
        "",
        f"Build times (`docker build --network=none`, wheelhouse): lean {lean['build_s']:.0f} s, "
        f"full {full['build_s']:.0f} s. Health checks: lean every 5 s (first probe 5 s after start), "
        "full every 10 s; the time to healthy is bounded below by that interval.",
        "",
        f"Lean checks: {lean['checks']['clear_tweets']} clear tweets labelled right by `/v1/predict` and "
        f"`/v1/predict/batch` (default model `{lean['checks']['default_model']}`; right out of "
        f"{lean['checks']['clear_tweets']} per served model: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(lean['checks']['right_per_model'].items()))}), "
        f"{len(lean['checks']['rejected'])} bad requests rejected with 4xx "
        f"({', '.join(sorted({str(c) for c in lean['checks']['rejected'].values()}))}); "
        f"absent from the image: {', '.join(lean['absent_packages'])}; runs as uid {lean['uid']}. "
        f"No image holds a `*.fp32.onnx` export. Model label: {lean['model_label']['name']} "
        f"v{lean['model_label']['version']}.",
        f"Full checks: `/`, `/_stcore/health`, `/api/v1/predict`; feedback row `{full['feedback_id']}` written "
        f"through `sentiment.feedback` and read back from the volume by a new container; runs as uid {full['uid']}.",
        "",
    ]
    compose = facts.get("compose")
    lines += [
        f"Compose (`deploy/compose/compose.yaml` + `compose.host.yaml`, docker-compose 1.29): up in {compose['up_s']:.0f} s, "
        f"every service ready within {max(compose['ready_s'].values()):.0f} s; MLflow holds the "
        f"{compose['checks']['seeded_records']} run records of `exports/runs`; nginx answered "
        f"{compose['checks']['proxy_answers']} predictions, spread over both replicas "
        f"({', '.join(f'{k} {v:.0f}' for k, v in compose['checks']['replica_shares'].items())}); the product reads "
        f"{compose['product_sees_runs']} runs from the server; API and product read-only, no capabilities, uid 10001; "
        f"MLflow image built in {compose['mlflow_build_s']:.0f} s; the whole Compose part took {compose['total_s']:.0f} s."
        if compose else "Compose: not run (DOCKER_TEST_COMPOSE=0).",
        "",
    ]
    (results / "docker.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("startup")
    start.add_argument("container")
    start.add_argument("t0", type=float)
    start.add_argument("health_url")
    start.add_argument("ready_url")
    start.add_argument("--timeout", type=float, default=120.0)
    start.add_argument("--created", type=float, default=None, help="when `docker create` returned (epoch seconds)")
    for name in ("lean", "full"):
        sub.add_parser(name).add_argument("base")
    report = sub.add_parser("report")
    report.add_argument("facts", type=Path)
    report.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    if args.command == "report":
        write_report(args.facts, args.results)
        return 0
    checks: dict[str, Callable[[], Any]] = {
        "startup": lambda: startup(args.container, args.t0, args.health_url, args.ready_url, args.timeout, args.created),
        "lean": lambda: check_lean(args.base.rstrip("/")),
        "full": lambda: check_full(args.base.rstrip("/")),
    }
    return answer(args.command, checks[args.command])


def answer(command: str, check: Callable[[], Any]) -> int:
    """Run ``check``: its result as one JSON line on stdout and 0, or the reasons on stderr and 1."""
    try:
        result = check()
    except CheckFailed as error:
        sys.stderr.write(f"FAILED {command}:\n{error}\n")
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
