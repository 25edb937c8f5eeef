"""MLflow "model from code": wraps an export bundle so that MLflow serves the same predictor as the API.

Logged by ``training.tracking.log_model_run`` with ``code_paths=["sentiment"]``; MLflow executes this file when
the model is loaded (``mlflow.pyfunc.load_model``, ``mlflow models serve``).
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from sentiment.predictor import load_predictor
from sentiment.scoring import to_labels


class SentimentModel(PythonModel):
    """Input: a DataFrame with a ``text`` column. Output: ``label``, ``negative``, ``positive`` columns."""

    def load_context(self, context: PythonModelContext) -> None:
        self.predictor = load_predictor(context.artifacts["bundle"])

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        texts = model_input["text"].astype(str).tolist() if isinstance(model_input, pd.DataFrame) else list(model_input)
        proba = self.predictor.predict_proba(texts)
        labels, _ = to_labels(proba)
        return pd.DataFrame({"label": labels, "negative": proba[:, 0], "positive": proba[:, 1]})


mlflow.models.set_model(SentimentModel())
