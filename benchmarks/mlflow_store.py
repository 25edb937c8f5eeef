"""A throw-away MLflow store holding one export, logged as training logs models, for ``mlflow models serve``.

The export is logged with :func:`training.tracking.log_model_run` (a pyfunc wrapping the ONNX bundle, with the
``api`` package as code, registered as ``tweet-sentiment`` with the model's name as alias), into a sqlite store
in a folder of the caller's choosing, so that the benchmark never needs nor touches the project's own store.
``benchmarks.run`` runs this module as a child process (MLflow sets process-wide state) and reads one JSON
line: ``{"tracking_uri", "model_uri", "run_id", "version"}``.

    python -m benchmarks.mlflow_store exports/minilm /tmp/bench-mlflow
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def prepare(export: Path, store: Path) -> dict[str, str]:
    """Log ``export`` into a new sqlite store under ``store``; return its tracking and model URIs."""
    store.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{(store / 'mlflow.db').resolve()}"
    # training.config reads the store from the environment at call time; set it before anything logs.
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from sentiment.exports import read_metadata
    from training import config
    from training.tracking import log_model_run

    name = read_metadata(export)["name"]
    run_id, version = log_model_run(name=name, family=read_metadata(export)["family"],
                                    params={"source": f"benchmark copy of {export}"}, evaluations={},
                                    data_hashes={}, bundle=export, tags={"run_kind": "benchmark"})
    return {"tracking_uri": tracking_uri, "model_uri": f"models:/{config.REGISTERED_MODEL}/{version}",
            "run_id": run_id, "version": str(version)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mlflow_store", description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="an exports/<model> folder")
    parser.add_argument("store", type=Path, help="folder for the new store (database and artifacts)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.stdout.write(json.dumps(prepare(args.export, args.store)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
