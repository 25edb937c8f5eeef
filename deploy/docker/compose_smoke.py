"""HTTP checks of the Compose stack (deploy/compose: compose.yaml with compose.host.yaml), run by
``deploy/docker/compose.sh``.

Standard library only, like ``smoke.py`` (whose helpers it uses). Prints one JSON object on stdout; exits 1 with
the reasons on stderr when a check fails.

    python3 deploy/docker/compose_smoke.py wait                # until every service answers (or the timeout)
    python3 deploy/docker/compose_smoke.py check RUNS_DIR      # MLflow seeded, both API replicas behind nginx, the product

``check`` reads the stack's secrets from its environment, as compose.sh started the stack with them (never from
the command line, where ``ps`` shows them; never printed): ``API_KEYS`` (it sends the first),
``MLFLOW_ADMIN_PASSWORD`` and ``MLFLOW_READER_PASSWORD``. It shows that MLflow refuses anyone without credentials
(401, writes and reads alike), that the product's read-only user reads but cannot write (403), that the admin
writes, and that the API, through nginx and at the product's ``/api``, answers 401 without a key.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smoke import CLEAR_TWEETS, CheckFailed, answer, expect, request

# The ports of deploy/compose/compose.host.yaml.
MLFLOW, API_1, API_2, PROXY, APP = (f"http://127.0.0.1:{port}" for port in (15000, 18001, 18002, 18080, 18501))
READY = {"mlflow": f"{MLFLOW}/health", "api-1": f"{API_1}/readyz", "api-2": f"{API_2}/readyz",
         "proxy": f"{PROXY}/readyz", "app": f"{APP}/api/readyz"}
SEEDED_FROM_TAG = "seeded_from"  # app/runs.py tags each run it copies with its record's run id
# The MLflow users of deploy/compose/compose.yaml: the server's admin, and the product's read-only user.
ADMIN, READER = "admin", "reader"
# A registered model made and deleted by the check: the writes an attacker would make (create, move an alias).
PROBE_MODEL = "compose-check-probe"


def stack_credentials(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The stack's credentials from the environment: one API key, the admin's and the reader's passwords."""
    found = {"api_key": environ.get("API_KEYS", "").split(",")[0].strip(),
             ADMIN: environ.get("MLFLOW_ADMIN_PASSWORD", ""), READER: environ.get("MLFLOW_READER_PASSWORD", "")}
    missing = [name for name, value in found.items() if not value]
    if missing:
        raise CheckFailed(f"set API_KEYS, MLFLOW_ADMIN_PASSWORD and MLFLOW_READER_PASSWORD (missing: {missing})")
    return found


def call(url: str, payload: Any = None, *, method: str = "POST", user: tuple[str, str] | None = None,
         api_key: str | None = None) -> tuple[int, Any]:
    """One JSON exchange, as a given MLflow user or with an API key, or anonymous: (status, body as JSON or text).

    HTTP errors are answers, not exceptions. The credentials travel in headers only: nothing returned holds them.
    """
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode("ascii")
    if api_key is not None:
        headers["X-API-Key"] = api_key
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        return status, body.decode("utf-8", "replace")[:200]


def check_mlflow_auth(credentials: dict[str, str], failures: list[str]) -> dict[str, int]:
    """Status codes of the writes and reads an attacker, the product's user and the admin would make."""
    admin, reader = (ADMIN, credentials[ADMIN]), (READER, credentials[READER])
    api = f"{MLFLOW}/api/2.0/mlflow"
    codes = {
        "anonymous_create_model": call(f"{api}/registered-models/create", {"name": PROBE_MODEL})[0],
        "anonymous_search": call(f"{api}/experiments/search", {"max_results": 1})[0],
        "wrong_password_create_model": call(f"{api}/registered-models/create", {"name": PROBE_MODEL},
                                            user=(ADMIN, credentials[ADMIN] + "x"))[0],
        "admin_create_model": call(f"{api}/registered-models/create", {"name": PROBE_MODEL}, user=admin)[0],
        "reader_search": call(f"{api}/experiments/search", {"max_results": 1}, user=reader)[0],
        "reader_set_alias": call(f"{api}/registered-models/alias",
                                 {"name": PROBE_MODEL, "alias": "champion", "version": "1"}, user=reader)[0],
        "reader_delete_model": call(f"{api}/registered-models/delete", {"name": PROBE_MODEL}, method="DELETE",
                                    user=reader)[0],
        "anonymous_delete_model": call(f"{api}/registered-models/delete", {"name": PROBE_MODEL}, method="DELETE")[0],
        "admin_delete_model": call(f"{api}/registered-models/delete", {"name": PROBE_MODEL}, method="DELETE",
                                   user=admin)[0],
        "anonymous_health": request(f"{MLFLOW}/health")[0],
    }
    wanted = {"anonymous_create_model": 401, "anonymous_search": 401, "wrong_password_create_model": 401,
              "admin_create_model": 200, "reader_search": 200, "reader_set_alias": 403, "reader_delete_model": 403,
              "anonymous_delete_model": 401, "admin_delete_model": 200, "anonymous_health": 200}
    for name, want in wanted.items():
        expect(codes[name] == want, f"MLflow {name.replace('_', ' ')}: HTTP {codes[name]}, expected {want}", failures)
    return codes


def wait(timeout: float) -> dict[str, float]:
    """Seconds until each service first answers 200 on its readiness route."""
    started, seen = time.time(), {}
    while time.time() - started < timeout:
        for name, url in READY.items():
            if name not in seen:
                try:
                    if request(url, timeout=2)[0] == 200:
                        seen[name] = round(time.time() - started, 1)
                except OSError:
                    pass
        if len(seen) == len(READY):
            return seen
        time.sleep(0.5)
    raise CheckFailed(f"after {timeout:.0f} s only {sorted(seen) or 'nothing'} of {sorted(READY)} answered 200")


def predict_requests(base: str) -> float:
    """POST /v1/predict requests a replica has answered, from its own /metrics."""
    status, body, _ = request(f"{base}/metrics")
    if status != 200:
        raise CheckFailed(f"{base}/metrics: HTTP {status}")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("http_requests_total{") and 'route="/v1/predict"' in line and 'method="POST"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def check(runs_dir: Path) -> dict[str, Any]:
    failures: list[str] = []
    credentials = stack_credentials()
    reader, key = (READER, credentials[READER]), credentials["api_key"]
    # MLflow: no write (nor read) without credentials; the product's user reads only.
    mlflow_auth = check_mlflow_auth(credentials, failures)
    # Every run record of exports/runs is in the server's store, as the product's user reads it.
    records = {json.loads(p.read_text())["run_id"] for p in runs_dir.glob("*.json")}
    status, body = call(f"{MLFLOW}/api/2.0/mlflow/experiments/search", {"max_results": 100}, user=reader)
    experiments = [e["experiment_id"] for e in body.get("experiments", [])] if status == 200 else []
    expect(status == 200, f"MLflow experiments/search: HTTP {status} {body}", failures)
    status, body = call(f"{MLFLOW}/api/2.0/mlflow/runs/search", {"experiment_ids": experiments, "max_results": 1000},
                        user=reader)
    expect(status == 200, f"MLflow runs/search: HTTP {status} {body}", failures)
    runs = body.get("runs", []) if status == 200 else []
    seeded = {t["value"] for r in runs for t in r.get("data", {}).get("tags", []) if t["key"] == SEEDED_FROM_TAG}
    expect(records <= seeded, f"MLflow lacks the runs {sorted(records - seeded)} of {runs_dir}", failures)
    # The API through nginx: 401 without a key; with one, every answer right, and both replicas took a share.
    without_key = {"proxy": call(f"{PROXY}/v1/predict", {"text": CLEAR_TWEETS[0][0]})[0],
                   "product_api": call(f"{APP}/api/v1/predict", {"text": CLEAR_TWEETS[0][0]})[0]}
    for name, status in without_key.items():
        expect(status == 401, f"{name} /v1/predict without an API key: HTTP {status}, expected 401", failures)
    before = {base: predict_requests(base) for base in (API_1, API_2)}
    answered = 0
    for _ in range(4):
        for text, want in CLEAR_TWEETS:
            status, body = call(f"{PROXY}/v1/predict", {"text": text}, api_key=key)
            expect(status == 200 and body.get("label") == want, f"nginx /v1/predict {text[:30]!r}: HTTP {status} {body}",
                   failures)
            answered += status == 200
    shares = {base: predict_requests(base) - before[base] for base in before}
    expect(all(share > 0 for share in shares.values()), f"nginx did not spread the requests: {shares}", failures)
    # The product.
    status, health, _ = request(f"{APP}/_stcore/health")
    expect(status == 200 and health.strip() == b"ok", f"product /_stcore/health: HTTP {status}", failures)
    status, body = call(f"{APP}/api/v1/predict", {"text": CLEAR_TWEETS[0][0]}, api_key=key)
    expect(status == 200 and body.get("label") == CLEAR_TWEETS[0][1], f"product /api/v1/predict: HTTP {status} {body}",
           failures)
    if failures:
        raise CheckFailed("\n".join(failures))
    return {"mlflow_runs": len(runs), "seeded_records": len(records), "mlflow_auth": mlflow_auth,
            "without_api_key": without_key, "proxy_answers": answered,
            "replica_shares": {"api-1": shares[API_1], "api-2": shares[API_2]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("wait").add_argument("--timeout", type=float, default=600.0)
    sub.add_parser("check").add_argument("runs_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "wait":
        return answer("wait", lambda: wait(args.timeout))
    return answer("check", lambda: check(args.runs_dir))


if __name__ == "__main__":
    sys.exit(main())
