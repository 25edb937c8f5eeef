"""Part 3 of ``make soak``: one anonymous session abuses the product while the API is saturated (part 1).

A child process (``python -m benchmarks.soak_abuse --child``) is the product's own code path, with its shipped
limits:

- **uploads**: the Predict page's reader (``app.inference.read_tweets_csv``) on hostile files: the wide CSV (a
  132 kB header of 65,000 columns, which once took 1.6 GB), a 10,000-column body, a line of 2 MB, one row more than
  ``BATCH_MAX_ROWS``, a UTF-16 file without a text column. Each must end in a clear ``CsvError`` (or, for
  the UTF-16 file, the question which column holds the tweets), and the process's peak memory must stay bounded;
- **feedback flood**: one client address sends thumbs on fresh predictions through the product's use case
  (``app.services.record_feedback``) as fast as it can; the per-address limit must refuse all but
  ``FEEDBACK_PER_CLIENT_PER_HOUR``, and none of the accepted verdicts (unreviewed) may reach a retraining
  (``training.feedback.read_store``, the reader of ``make retrain``).

The child prints one JSON line; the driver (``benchmarks.soak``) turns it into checks.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.servers import PROJECT_ROOT

FLOOD = 1000  # thumbs one client tries to give
CLIENT = "203.0.113.7"  # TEST-NET-3: a documentation address


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _hostile_files(max_rows: int) -> dict[str, bytes]:
    wide_header = ",".join(f"c{i}" for i in range(65_000)).encode() + b"\n" + b"x\n"
    return {
        "wide header (65,000 columns)": wide_header,
        "wide body (10,000 columns a row)": b"text\n" + (b"a," * 10_000 + b"b\n") * 20,
        "2 MB line": b"text\n" + b"a" * 2_000_000 + b"\n",
        "one row over the limit": b"text\n" + b"nice flight\n" * (max_rows + 1),
        "UTF-16 without a text column": "id\tbody\n1\tlovely crew\n".encode("utf-16"),
    }


def child_main() -> int:
    from app import services
    from app.inference import CsvError, NoTextColumnError, Prediction, read_tweets_csv
    from app.settings import get_settings
    from training.feedback import read_store

    settings = get_settings()
    baseline = _peak_mb()
    uploads = {}
    for name, data in _hostile_files(settings.batch_max_rows).items():
        started = time.perf_counter()
        try:
            frame = read_tweets_csv(data, settings.batch_max_rows)
            outcome = f"read {len(frame)} rows"
        except NoTextColumnError:
            outcome = "asks which column holds the tweets"
        except CsvError as error:
            outcome = f"refused: {error}"
        uploads[name] = {"bytes": len(data), "outcome": outcome[:160], "seconds": round(time.perf_counter() - started, 3),
                         "peak_mb_growth": round(_peak_mb() - baseline, 1)}
    accepted = limited = 0
    started = time.perf_counter()
    for i in range(FLOOD):
        prediction = Prediction(text=f"flood {i} of a bot that wants to steer training", model_name="minilm",
                                model_version="4", label="positive", confidence=0.9,
                                probabilities={"negative": 0.1, "positive": 0.9}, latency_ms=1.0)
        try:
            services.record_feedback(prediction, "down" if i % 2 else "up", client=CLIENT)
            accepted += 1
        except services.FeedbackLimited:
            limited += 1
    flood_seconds = time.perf_counter() - started
    rows, dropped = read_store(settings.feedback_db)
    result = {"uploads": uploads, "peak_mb_growth": round(_peak_mb() - baseline, 1),
              "flood": {"sent": FLOOD, "accepted": accepted, "limited": limited,
                        "limit": settings.feedback_per_client_per_hour, "seconds": round(flood_seconds, 2),
                        "training_rows": len(rows), "dropped": dict(dropped)}}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def start(workdir: Path) -> subprocess.Popen[str]:
    """Start the child (it runs beside part 1); :func:`finish` reads its result."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "abuse-feedback.db"
    db.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDBACK_", "BATCH_MAX_ROWS", "TELEMETRY_"))}
    env |= {"FEEDBACK_DB": str(db), "APPLICATIONINSIGHTS_CONNECTION_STRING": "", "SEED_MLFLOW_RUNS": "false",
            "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "benchmarks.soak_abuse", "--child"], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(child: subprocess.Popen[str], timeout_s: float = 120) -> dict[str, Any]:
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        return {"error": f"the abuse child did not finish within {timeout_s:.0f} s"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        return {"error": f"the abuse child exited with {child.returncode}: {err.strip()[-500:]}"}
    return json.loads(lines[-1])


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        sys.exit(child_main())
    result = finish(start(PROJECT_ROOT / "results" / "tmp"))
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
