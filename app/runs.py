"""MLflow runs for the comparison page, and seeding an MLflow store from the run records in ``exports/runs``.

Nothing here imports Streamlit: the training code may call :func:`seed_from_records` too. The Streamlit
caching of these queries lives in :mod:`app.services`.

Seeding is idempotent: a record is skipped when its run still exists in the store (the machine that trained
it) or when an earlier seeding copied it (tag ``seeded_from``). Runs trained later sit beside the seeded ones. A
seeded copy is topped up with the metrics, tags and artifacts its record gained since (the out-of-domain figures
measured for older runs by ``python -m training.evaluate_ood --update-runs``); a value already there is kept.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from app.settings import redact_uri

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "tweet-sentiment"
SEEDED_FROM_TAG = "seeded_from"
# The out-of-domain sets of training.config.OUT_OF_DOMAIN_SETS (the product does not import training): human-labelled
# recent tweets, what the product's users send, where Sentiment140's labels come from 2009 emoticons.
OUT_OF_DOMAIN_SETS = {"tweeteval_validation": "TweetEval validation", "airline_dev": "tweets to US airlines"}
# The evaluation sets in the run records (docs/CONTRACTS.md), in the order the page lists them.
EVAL_SETS = ("test", "validation_random", "validation", *OUT_OF_DOMAIN_SETS)
QUALITY_METRICS = ("accuracy", "f1_macro", "roc_auc")
MISSING = "—"  # shown for a figure a run lacks: older runs were scored on fewer sets
_HIGHLIGHT = "background-color: #fff3b0"
_BATCH = 500


def load_records(runs_dir: str | Path) -> list[dict[str, Any]]:
    """The run records (``<run_id>.json``) in ``runs_dir``, oldest first; none when the folder is absent."""
    folder = Path(runs_dir)
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            logger.error("skipping %s: not valid JSON (%s)", path, error)
            continue
        if "run_id" not in record:
            logger.error("skipping %s: no run_id", path)
            continue
        records.append(record)
    return sorted(records, key=lambda r: (r.get("start_time") or 0, r["run_id"]))


def _artifact_location(tracking_uri: str) -> str | None:
    """Artifacts beside an embedded sqlite store (``mlartifacts/``), as the training code does."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def seed_from_records(runs_dir: str | Path, tracking_uri: str) -> list[str]:
    """Copy the run records of ``runs_dir`` into the MLflow store at ``tracking_uri`` (once each).

    Args:
        runs_dir: folder of ``<run_id>.json`` records (docs/CONTRACTS.md).
        tracking_uri: the MLflow store to fill (``sqlite:///…`` or a server URL).

    Returns:
        The ids of the runs created (empty when everything was already there).
    """
    records = load_records(runs_dir)
    if not records:
        return []
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    created: list[str] = []
    topped_up: list[str] = []
    known: dict[str, dict[str, Any]] = {}  # experiment → source run id → its seeded copy (None: the run itself)
    for record in records:
        experiment_name = record.get("experiment") or DEFAULT_EXPERIMENT
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            experiment_id = client.create_experiment(experiment_name,
                                                     artifact_location=_artifact_location(tracking_uri))
        else:
            experiment_id = experiment.experiment_id
        if experiment_id not in known:
            runs = client.search_runs([experiment_id], max_results=50_000)
            known[experiment_id] = {r.info.run_id: None for r in runs} | {
                r.data.tags[SEEDED_FROM_TAG]: r for r in runs if SEEDED_FROM_TAG in r.data.tags}
        source_id = record["run_id"]
        if source_id in known[experiment_id]:
            seeded = known[experiment_id][source_id]
            if seeded is not None and _top_up(client, seeded, record):
                topped_up.append(seeded.info.run_id)
            continue
        try:
            client.get_run(source_id)  # the run lives in another experiment of this store
            continue
        except MlflowException:
            pass
        start = int(record.get("start_time") or 0) or None
        end = int(record.get("end_time") or 0) or start
        tags = {str(k): str(v) for k, v in (record.get("tags") or {}).items()}
        tags[SEEDED_FROM_TAG] = source_id
        run = client.create_run(experiment_id, start_time=start, tags=tags, run_name=record.get("run_name"))
        run_id = run.info.run_id
        history = record.get("metric_history") or {}
        metrics = [Metric(key, float(value), end or 0, 0)
                   for key, value in (record.get("metrics") or {}).items() if key not in history]
        metrics += [Metric(key, float(value), int(ts), int(step))
                    for key, points in history.items() for step, value, ts in points]
        params = [Param(str(k), str(v)) for k, v in (record.get("params") or {}).items()]
        for chunk in _chunks(metrics, _BATCH):
            client.log_batch(run_id, metrics=chunk)
        for chunk in _chunks(params, 100):
            client.log_batch(run_id, params=chunk)
        client.log_batch(run_id, tags=[RunTag("mlflow.note.content", f"Seeded from exports/runs/{source_id}.json")])
        for artifact_path, content in (record.get("artifacts") or {}).items():
            client.log_dict(run_id, content, artifact_path)
        client.set_terminated(run_id, status=record.get("status") or "FINISHED", end_time=end)
        known[experiment_id][source_id] = None
        created.append(run_id)
    if created or topped_up:
        logger.info("seeded %d MLflow run(s) and topped up %d from %s into %s", len(created), len(topped_up),
                    runs_dir, redact_uri(tracking_uri))
    return created


def _artifact_paths(client: Any, run_id: str, folder: str | None = None) -> set[str]:
    paths: set[str] = set()
    for entry in client.list_artifacts(run_id, folder):
        paths |= _artifact_paths(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return paths


def _top_up(client: Any, run: Any, record: dict[str, Any]) -> bool:
    """Add to a seeded run the metrics its record gained since it was seeded, with the new tags and artifacts.

    Returns:
        False (and nothing read beyond the run) when the record has no metric the run lacks.
    """
    from mlflow.entities import Metric, RunTag

    history = record.get("metric_history") or {}
    missing = {key: value for key, value in (record.get("metrics") or {}).items()
               if key not in run.data.metrics and key not in history}
    if not missing:
        return False
    run_id, end = run.info.run_id, int(record.get("end_time") or 0)
    tags = [RunTag(str(k), str(v)) for k, v in (record.get("tags") or {}).items() if str(k) not in run.data.tags]
    client.log_batch(run_id, metrics=[Metric(k, float(v), end, 0) for k, v in missing.items()], tags=tags)
    present = _artifact_paths(client, run_id)
    for artifact_path, content in (record.get("artifacts") or {}).items():
        if artifact_path not in present:
            client.log_dict(run_id, content, artifact_path)
    return True


def search_runs(tracking_uri: str) -> pd.DataFrame:
    """Every active run of every experiment (``mlflow.search_runs``), newest first."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.search_runs(search_all_experiments=True, order_by=["attributes.start_time DESC"])


def load_artifact(tracking_uri: str, run_id: str, path: str) -> Any | None:
    """A JSON artifact of a run, or None when the run has none at ``path``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
    except Exception:  # absent artifact, unreachable store: the chart is simply not drawn
        logger.debug("no artifact %s in run %s", path, run_id, exc_info=True)
        return None


def metric_history(tracking_uri: str, run_id: str, key: str) -> pd.DataFrame:
    """``step, value`` of one metric over a run (e.g. the transformer's ``train_loss``)."""
    from mlflow.tracking import MlflowClient

    points = MlflowClient(tracking_uri=tracking_uri).get_metric_history(run_id, key)
    return pd.DataFrame({"step": [p.step for p in points], "value": [p.value for p in points]}).sort_values("step")


# -- shaping search_runs' frame for the charts ------------------------------------------------------------------
def model_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that trained a model (tag ``model_name``), with ``model``, ``family`` and ``start`` columns."""
    if runs.empty or "tags.model_name" not in runs:
        return pd.DataFrame(columns=["run_id", "model", "family", "start"])
    frame = runs[runs["tags.model_name"].notna()].copy()
    frame["model"] = frame["tags.model_name"]
    frame["family"] = frame.get("tags.model_family", pd.Series(index=frame.index, dtype=object)).fillna("unknown")
    frame["start"] = frame["start_time"]
    return frame


def latest_per_model(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest finished run of each model (the one the charts show)."""
    frame = model_runs(runs)
    if frame.empty:
        return frame
    if "status" in frame:
        frame = frame[frame["status"] == "FINISHED"]
    return frame.sort_values("start", ascending=False).drop_duplicates("model").sort_values("model")


def tidy_metrics(runs: pd.DataFrame, metrics: Iterable[str] = QUALITY_METRICS,
                 sets: Iterable[str] = EVAL_SETS) -> pd.DataFrame:
    """Long frame ``model, family, set, metric, value`` from ``metrics.<set>_<metric>`` columns."""
    rows = []
    for _, run in runs.iterrows():
        for set_name in sets:
            for metric in metrics:
                value = run.get(f"metrics.{set_name}_{metric}")
                if value is not None and pd.notna(value):
                    rows.append({"model": run["model"], "family": run["family"], "set": set_name,
                                 "metric": metric, "value": float(value), "run_id": run["run_id"]})
    return pd.DataFrame(rows, columns=["model", "family", "set", "metric", "value", "run_id"])


def available_sets(runs: pd.DataFrame) -> list[str]:
    """Evaluation sets that some run has an accuracy for, in the contract's order."""
    return [s for s in EVAL_SETS if f"metrics.{s}_accuracy" in runs and runs[f"metrics.{s}_accuracy"].notna().any()]


def accuracy_by_set(runs: pd.DataFrame, sets: Iterable[str]) -> pd.DataFrame:
    """``model, family`` and one accuracy column per set (NaN where the run was not scored on it)."""
    table = runs[["model", "family"]].reset_index(drop=True)
    for set_name in sets:
        column = f"metrics.{set_name}_accuracy"
        table[set_name] = runs[column].to_numpy(dtype=float) if column in runs else float("nan")
    return table


def unscored(runs: pd.DataFrame, set_name: str) -> list[str]:
    """The models whose run has no accuracy on ``set_name`` (runs from before the set was scored)."""
    column = f"metrics.{set_name}_accuracy"
    return sorted(runs["model"] if column not in runs else runs.loc[runs[column].isna(), "model"])


def tradeoff_points(runs: pd.DataFrame, set_name: str) -> pd.DataFrame:
    """``model, family, accuracy, latency_ms`` per run: accuracy on ``set_name``; latency p50 measured on
    that set, else on the first set where it was measured (latency belongs to the model, not to the data)."""
    def column(name: str) -> pd.Series:
        return runs[name] if name in runs else pd.Series(float("nan"), index=runs.index)

    latency = column(f"metrics.{set_name}_latency_p50_ms")
    for other in EVAL_SETS:
        latency = latency.fillna(column(f"metrics.{other}_latency_p50_ms"))
    return pd.DataFrame({"model": runs["model"], "family": runs["family"],
                         "accuracy": column(f"metrics.{set_name}_accuracy"), "latency_ms": latency})


def runs_table(runs: pd.DataFrame, champion: str | None) -> pd.DataFrame:
    """Runs with their params and headline metrics, for display (champion first)."""
    frame = model_runs(runs)
    if frame.empty:
        return frame
    shown = (*QUALITY_METRICS, "latency_p50_ms")
    # Each set's accuracy always has a column (a run not scored on the set shows MISSING), in the sets' order;
    # then the other figures of those sets, then metrics of other prefixes (fp32_…, feedback_…).
    for set_name in EVAL_SETS:
        if f"metrics.{set_name}_accuracy" not in frame:
            frame[f"metrics.{set_name}_accuracy"] = float("nan")
    known = [f"metrics.{s}_{m}" for s in EVAL_SETS for m in shown if f"metrics.{s}_{m}" in frame]
    metric_columns = known + [c for c in frame.columns if c.startswith("metrics.") and c not in known and
                              any(c.endswith(f"_{m}") for m in shown)]
    param_columns = [c for c in frame.columns if c.startswith("params.")]
    table = frame[["model", "family", "start", "status", "run_id", *metric_columns, *param_columns]].copy()
    table.insert(0, "champion", table["model"] == champion)
    table.columns = _display_names(list(table.columns))
    return table.sort_values(["champion", "start"], ascending=[False, False]).reset_index(drop=True)


def styled(table: pd.DataFrame, highlight: str | None = None) -> Any:
    """``table`` for ``st.dataframe``: figures to four decimals, a missing one as ``MISSING``, and the rows where the
    boolean column ``highlight`` is true in yellow (a pandas ``Styler``; the data underneath stays numeric)."""
    figures = [c for c in table.columns if pd.api.types.is_float_dtype(table[c])]
    styler = table.style.format(precision=4, na_rep=MISSING, subset=figures)
    if highlight is not None:
        styler = styler.apply(lambda row: [_HIGHLIGHT if row[highlight] else ""] * len(row), axis=1)
    return styler


def _display_names(columns: list[str]) -> list[str]:
    """Short column names (``metrics.test_accuracy`` → ``test_accuracy``) that never collide.

    The columns the table builds (``champion``, ``model``, ``family``, ...) come first and keep their names; a
    metric or parameter whose short name is taken is shown as ``metric <name>`` / ``param <name>`` (a run may
    log a parameter called ``family``).
    """
    names: list[str] = []
    for column in columns:
        kind = "metric" if column.startswith("metrics.") else "param" if column.startswith("params.") else None
        short = column.removeprefix("metrics.").removeprefix("params.param.").removeprefix("params.")
        for candidate in (short, f"{kind} {short}", column):
            if candidate not in names:
                names.append(candidate)
                break
    return names


def main(argv: list[str] | None = None) -> int:
    """``python -m app.runs``: seed the MLflow store from the run records ahead of the first Compare visit."""
    from app.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--runs-dir", default=str(settings.runs_dir), help="folder of <run_id>.json records")
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri, help="MLflow store to fill")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    created = seed_from_records(args.runs_dir, args.tracking_uri)
    logger.info("%d run(s) created in %s", len(created), redact_uri(args.tracking_uri))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
