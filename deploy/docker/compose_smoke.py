"""HTTP checks of the Compose stack (deploy/compose: compose.yaml with compose.host.yaml), run by
``deploy/docker/compose.sh``.

Standard library only, like ``smoke.py`` (whose helpers it uses). Prints one JSON object on stdout; exits 1 with
the reasons on stderr when a check fails.

    python3 deploy/docker/compose_smoke.py wait                # until every service answers (or the timeout)
    python3 deploy/docker/compose_smoke.py check RUNS_DIR      # MLflow seeded, both API replicas behind nginx, the product
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from smoke import CLEAR_TWEETS, CheckFailed, answer, expect, post_json, request

# The ports of deploy/compose/compose.host.yaml.
MLFLOW, API_1, API_2, PROXY, APP = (f"http://127.0.0.1:{port}" for port in (15000, 18001, 18002, 18080, 18501))
READY = {"mlflow": f"{MLFLOW}/health", "api-1": f"{API_1}/readyz", "api-2": f"{API_2}/readyz",
         "proxy": f"{PROXY}/readyz", "app": f"{APP}/api/readyz"}
SEEDED_FROM_TAG = "seeded_from"  # app/runs.py tags each run it copies with its record's run id


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
    # MLflow: every run record of exports/runs is in the server's store.
    records = {json.loads(p.read_text())["run_id"] for p in runs_dir.glob("*.json")}
    status, body = post_json(f"{MLFLOW}/api/2.0/mlflow/experiments/search", {"max_results": 100})
    experiments = [e["experiment_id"] for e in body.get("experiments", [])] if status == 200 else []
    expect(status == 200, f"MLflow experiments/search: HTTP {status} {body}", failures)
    status, body = post_json(f"{MLFLOW}/api/2.0/mlflow/runs/search", {"experiment_ids": experiments, "max_results": 1000})
    expect(status == 200, f"MLflow runs/search: HTTP {status} {body}", failures)
    runs = body.get("runs", []) if status == 200 else []
    seeded = {t["value"] for r in runs for t in r.get("data", {}).get("tags", []) if t["key"] == SEEDED_FROM_TAG}
    expect(records <= seeded, f"MLflow lacks the runs {sorted(records - seeded)} of {runs_dir}", failures)
    # The API through nginx: every answer right, and both replicas took a share.
    before = {base: predict_requests(base) for base in (API_1, API_2)}
    answered = 0
    for _ in range(4):
        for text, want in CLEAR_TWEETS:
            status, body = post_json(f"{PROXY}/v1/predict", {"text": text})
            expect(status == 200 and body.get("label") == want, f"nginx /v1/predict {text[:30]!r}: HTTP {status} {body}",
                   failures)
            answered += status == 200
    shares = {base: predict_requests(base) - before[base] for base in before}
    expect(all(share > 0 for share in shares.values()), f"nginx did not spread the requests: {shares}", failures)
    # The product.
    status, health, _ = request(f"{APP}/_stcore/health")
    expect(status == 200 and health.strip() == b"ok", f"product /_stcore/health: HTTP {status}", failures)
    status, body = post_json(f"{APP}/api/v1/predict", {"text": CLEAR_TWEETS[0][0]})
    expect(status == 200 and body.get("label") == CLEAR_TWEETS[0][1], f"product /api/v1/predict: HTTP {status} {body}",
           failures)
    if failures:
        raise CheckFailed("\n".join(failures))
    return {"mlflow_runs": len(runs), "seeded_records": len(records), "proxy_answers": answered,
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
