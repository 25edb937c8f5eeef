"""Part 2 of ``make soak``: thumbs verdicts survive SIGKILL, reach Application Insights, and only once per row.

A child process (``python -m benchmarks.soak_feedback --child``) is the product's feedback path: it starts the
real telemetry flusher (``app.services.telemetry_flusher``) and records each verdict it reads on stdin through
the product's own use case (``app.services.record_feedback``: store the verdict, wake the flusher), then
prints a confirmation. The ingestion endpoint is the tests' fake (``tests/app/fake_ingestion.py``), served on
127.0.0.1 by this driver, so it outlives every child.

The driver streams verdicts (some changed later: a second revision under the same id), kills the child with
SIGKILL at random moments (mid-write, mid-flush), restarts it and re-submits every verdict whose write it did
not see confirmed (plus a few it did, which the store must ignore: it is keyed by the verdict's id). For a
while the endpoint accepts only every other item. After the last restart it waits for the flusher to drain,
then compares the SQLite rows with what the endpoint accepted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks.servers import PROJECT_ROOT
from sentiment.feedback import delivery_rows

logger = logging.getLogger(__name__)

# Fast flushing, small batches (many requests to be killed in the middle of), short retries.
CHILD_ENV = {
    "TELEMETRY_FLUSH_INTERVAL_S": "0.2",
    "TELEMETRY_BATCH_SIZE": "5",
    "TELEMETRY_TIMEOUT_S": "1",
    "TELEMETRY_BACKOFF_BASE_S": "0.2",
    "TELEMETRY_BACKOFF_MAX_S": "1",
    "TELEMETRY_INCLUDE_TEXT": "false",
    "SEED_MLFLOW_RUNS": "false",
    # This soak measures delivery through crashes, not abuse: one driver is every user here, so the per-address
    # and overall limits on verdicts are lifted (the limits have their own tests in tests/app).
    "FEEDBACK_PER_CLIENT_PER_HOUR": "1000000",
    "FEEDBACK_PER_HOUR": "1000000",
}
READY_TIMEOUT_S = 60.0
MAX_IN_FLIGHT = 40
_TEXTS = ("my bag is lost again", "lovely crew, thank you", "three hours on the tarmac", "best flight ever",
          "the wifi never worked", "not bad at all")


# -- the child ----------------------------------------------------------------------------------------------
def _emit(kind: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"kind": kind, **fields}) + "\n")
    sys.stdout.flush()


def child_main() -> int:
    """Start the flusher, then record each verdict read on stdin and confirm it on stdout."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from app import services
    from app.inference import Prediction

    record = getattr(services, "record_feedback", None)
    flusher = services.telemetry_flusher()
    retry = getattr(flusher, "retry", flusher)
    names = {f.name for f in dataclasses.fields(Prediction)}
    _emit("ready", pid=os.getpid(), lease_s=getattr(retry, "lease_s", None), telemetry=flusher.enabled,
          service_function=record is not None)
    for line in sys.stdin:
        item = json.loads(line)
        values = {"id": item["id"], "text": item["text"], "model_name": item["model_name"],
                  "model_version": item["model_version"], "label": item["label"], "confidence": item["confidence"],
                  "probabilities": {"negative": 1 - item["confidence"], "positive": item["confidence"]},
                  "latency_ms": 1.0}
        prediction = Prediction(**{k: v for k, v in values.items() if k in names})
        if record is not None:
            record(prediction, item["verdict"])
        else:  # before the use case existed: the same two steps the page made
            services.feedback_store().record_verdict(
                feedback_id=prediction.id, text=prediction.text, model_name=prediction.model_name,
                model_version=prediction.model_version, predicted_label=prediction.label,
                confidence=prediction.confidence, verdict=item["verdict"])
            flusher.wake()
        _emit("ok", id=item["id"], step=item["step"])
    return 0


# -- the driver ---------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    """One rated prediction: its steps (verdicts in order) and how far the driver got with them."""

    id: str
    steps: list[str]
    label: str
    text: str
    confidence: float
    issued: int = 0  # steps sent at least once
    confirmed: int = 0  # steps whose write was confirmed

    def line(self, step: int) -> str:
        return json.dumps({"id": self.id, "step": step, "verdict": self.steps[step], "text": self.text,
                           "model_name": "soak-model", "model_version": "1", "label": self.label,
                           "confidence": self.confidence}) + "\n"


@dataclass
class Child:
    """A running child, its confirmations (a reader thread fills the queue) and its stderr log."""

    process: subprocess.Popen[str]
    lines: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    ready: dict[str, Any] | None = None

    def start_reader(self) -> None:
        def read(stream: IO[str]) -> None:
            with contextlib.suppress(OSError, ValueError), stream:
                for line in stream:
                    with contextlib.suppress(ValueError):
                        self.lines.put(json.loads(line))
            self.lines.put(None)

        assert self.process.stdout is not None
        threading.Thread(target=read, args=(self.process.stdout,), daemon=True).start()

    def send(self, text: str) -> bool:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(text)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # stdout is left to the reader thread, which reads it to the end


def make_verdicts(count: int, rng: random.Random, flip_share: float = 0.2) -> list[Verdict]:
    verdicts = []
    for _ in range(count):
        first = rng.choice(["up", "down"])
        steps = [first, "down" if first == "up" else "up"] if rng.random() < flip_share else [first]
        verdicts.append(Verdict(str(uuid.UUID(int=rng.getrandbits(128), version=4)), steps,
                                rng.choice(["negative", "positive"]), rng.choice(_TEXTS),
                                round(rng.uniform(0.5, 1.0), 4)))
    return verdicts


def _start_child(db: Path, conn_str: str, log: IO[bytes]) -> Child:
    env = {k: v for k, v in os.environ.items() if k not in ("MAINTAINER_SECRET",)}
    env |= {"PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1", "FEEDBACK_DB": str(db),
            "APPLICATIONINSIGHTS_CONNECTION_STRING": conn_str, **CHILD_ENV}
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.soak_feedback", "--child"], cwd=PROJECT_ROOT,
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                               bufsize=1, start_new_session=True)
    child = Child(process)
    child.start_reader()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            message = child.lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if message is None:
            break
        if message.get("kind") == "ready":
            child.ready = message
            return child
    child.kill()
    raise RuntimeError(f"the feedback child did not start (exit {process.returncode}); see {log.name}")


def _confirm(child: Child, by_id: dict[str, Verdict]) -> bool:
    """Apply the confirmations received so far; False once the child's stdout closed."""
    while True:
        try:
            message = child.lines.get_nowait()
        except queue.Empty:
            return True
        if message is None:
            return False
        if message.get("kind") == "ok":
            verdict = by_id[message["id"]]
            verdict.confirmed = max(verdict.confirmed, message["step"] + 1)


def _drain_confirmations(child: Child, by_id: dict[str, Verdict], timeout_s: float = 5.0) -> None:
    """Apply what a killed child confirmed before it died (its stdout is read to the end)."""
    deadline = time.monotonic() + timeout_s
    while _confirm(child, by_id) and time.monotonic() < deadline:
        time.sleep(0.01)


def _undelivered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["telemetry_state"] != "sent" or r["sent_revision"] != r["revision"]]


def judge(verdicts: list[Verdict], rows: list[dict[str, Any]], accepted: list[tuple[str, int]],
          received: int) -> dict[str, Any]:
    """Compare what was recorded with the SQLite rows and the items the endpoint accepted."""
    expected = {v.id: v for v in verdicts}
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row)
    problems: list[str] = []
    for feedback_id, verdict in expected.items():
        found = by_id.get(feedback_id, [])
        if len(found) != 1:
            problems.append(f"{feedback_id}: {len(found)} rows")
        elif (found[0]["verdict"], found[0]["revision"]) != (verdict.steps[-1], len(verdict.steps)):
            problems.append(f"{feedback_id}: verdict {found[0]['verdict']} revision {found[0]['revision']}, "
                            f"expected {verdict.steps[-1]} revision {len(verdict.steps)}")
    problems += [f"{feedback_id}: row of a verdict never recorded" for feedback_id in by_id if feedback_id not in expected]
    accepted_set = set(accepted)
    sent_not_accepted = [f"{r['id']} revision {r['sent_revision']}" for r in rows if r["telemetry_state"] == "sent"
                         and (r["id"], r["sent_revision"]) not in accepted_set]
    undelivered = [f"{r['id']}: {r['telemetry_state']}, revision {r['revision']}, sent {r['sent_revision']}"
                   for r in _undelivered(rows)]
    undelivered += [f"{r['id']} revision {r['revision']}: marked sent, not accepted" for r in rows
                    if r["telemetry_state"] == "sent" and r["sent_revision"] == r["revision"]
                    and (r["id"], r["revision"]) not in accepted_set]
    return {
        "rows": {"verdicts": len(expected), "rows": len(rows), "problems": len(problems),
                 "problem_examples": problems[:5], "undelivered": len(undelivered),
                 "undelivered_examples": undelivered[:5]},
        "endpoint": {"accepted_items": len(accepted), "received_items": received,
                     "duplicate_deliveries": len(accepted) - len(accepted_set),
                     "sent_not_accepted": len(sent_not_accepted), "sent_not_accepted_examples": sent_not_accepted[:5]},
    }


def run_feedback_soak(count: int, kills: int, workdir: Path, *, seed: int = 0) -> dict[str, Any]:
    """Part 2; an ``error`` key says why it stopped early."""
    from tests.app.fake_ingestion import FakeIngestion

    started = time.perf_counter()
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"soak-feedback-{os.getpid()}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    verdicts = make_verdicts(count, rng)
    by_id = {v.id: v for v in verdicts}
    fake = FakeIngestion().start()
    result: dict[str, Any] = {"verdicts": count, "flipped": sum(len(v.steps) > 1 for v in verdicts), "kills": 0,
                              "restarts": 0, "resubmitted": 0, "duplicates_sent": 0, "db": str(db), "lives": []}
    child: Child | None = None
    log_path = workdir / f"soak-feedback-{os.getpid()}.log"
    try:
        with log_path.open("ab") as log:
            quota = -(-count // (kills + 1))
            fresh = iter(verdicts)
            lease_s = 0.0
            for life in range(kills + 1):
                last = life == kills
                # Every other item refused with a retryable error for a while: only accepted rows may become sent.
                fake.mode = "partial" if 0 < life < min(kills, 3) else "accept"
                child = _start_child(db, fake.connection_string, log)
                result["restarts"] += life > 0
                assert child.ready is not None
                if not child.ready.get("telemetry"):
                    raise RuntimeError("telemetry is off in the feedback child (connection string refused?)")
                lease_s = float(child.ready.get("lease_s") or 0.0)
                life_report = {"life": life, "mode": fake.mode, "resubmitted": 0, "fresh": 0}
                # What the last child may or may not have written: send it again (the store keys it by id).
                for verdict in verdicts:
                    if verdict.confirmed < verdict.issued:
                        child.send(verdict.line(verdict.confirmed))
                        life_report["resubmitted"] += 1
                    elif verdict.confirmed and rng.random() < 0.03:
                        child.send(verdict.line(verdict.confirmed - 1))  # a confirmed one, again: no new row
                        result["duplicates_sent"] += 1
                result["resubmitted"] += life_report["resubmitted"]
                life_started = time.monotonic()
                kill_at = None if last else life_started + rng.uniform(0.5, 2.5)
                mid_write = life % 2 == 0
                pace = 2.0 / max(quota, 1)
                next_send = life_started
                sent_fresh = 0
                life_limit = life_started + (90.0 if last else 30.0)
                while time.monotonic() < life_limit:
                    alive = _confirm(child, by_id)
                    now = time.monotonic()
                    if kill_at is not None and now >= kill_at:
                        if mid_write:  # a burst the child is still writing when it dies
                            for verdict in itertools.islice(fresh, rng.randint(3, 10)):
                                child.send(verdict.line(0))
                                verdict.issued = 1
                                sent_fresh += 1
                        child.kill()
                        result["kills"] += 1
                        _drain_confirmations(child, by_id)
                        break
                    if not alive:
                        raise RuntimeError(f"the feedback child exited on its own ({child.process.poll()})")
                    in_flight = sum(v.issued - v.confirmed for v in verdicts)
                    # A confirmed first verdict may now be changed (a second click on the same prediction).
                    for verdict in verdicts:
                        if verdict.issued == verdict.confirmed < len(verdict.steps) and verdict.issued > 0 \
                                and in_flight < MAX_IN_FLIGHT and rng.random() < 0.05:
                            child.send(verdict.line(verdict.issued))
                            verdict.issued += 1
                            in_flight += 1
                    if now >= next_send and in_flight < MAX_IN_FLIGHT and (last or sent_fresh < quota):
                        # In bursts, so that the flusher sends several rows per request (and the endpoint's
                        # partial mode refuses some of them).
                        burst = rng.randint(1, 8)
                        for verdict in itertools.islice(fresh, burst):
                            child.send(verdict.line(0))
                            verdict.issued = 1
                            sent_fresh += 1
                        next_send = now + pace * burst
                    if last and all(v.confirmed == len(v.steps) for v in verdicts):
                        break
                    time.sleep(0.002)
                life_report["fresh"] = sent_fresh
                life_report["confirmed"] = sum(v.confirmed for v in verdicts)
                result["lives"].append(life_report)
            # The last child keeps running: wait for its flusher to deliver everything (a row leased by a killed
            # child is due again when its lease ends).
            unconfirmed = [v.id for v in verdicts if v.confirmed < len(v.steps)]
            if unconfirmed:
                raise RuntimeError(f"{len(unconfirmed)} verdicts were never confirmed, e.g. {unconfirmed[:3]}")
            drain_started = time.monotonic()
            drain_limit = drain_started + lease_s + 20.0
            while time.monotonic() < drain_limit and _undelivered(delivery_rows(db)):
                time.sleep(0.25)
            result["drain_s"] = round(time.monotonic() - drain_started, 1)
            result["lease_s"] = lease_s
            result["service_function"] = child.ready.get("service_function")
            time.sleep(0.5)  # a send in flight when the rows turned sent has been recorded by the endpoint
    except Exception as error:  # recorded and failed by the checks
        logger.exception("feedback soak stopped")
        result["error"] = f"{type(error).__name__}: {error}"[:500]
    finally:
        if child is not None:
            child.kill()
        fake.stop()
    if "error" not in result:
        accepted = [(e["data"]["baseData"]["properties"]["feedback_id"],
                     int(e["data"]["baseData"]["properties"]["revision"])) for e in fake.events()]
        result |= judge(verdicts, delivery_rows(db), accepted, len(fake.events(accepted=False)))
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["log"] = str(log_path)
    return result


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        sys.exit(child_main())
    sys.exit("usage: python -m benchmarks.soak_feedback --child (started by python -m benchmarks.soak)")
