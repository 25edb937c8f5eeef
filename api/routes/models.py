"""``GET /v1/models``: what is served, from each export's metadata."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ReadyRegistryDep
from api.schemas import ModelInfo, ModelsResponse
from sentiment.registry import ServedModel

router = APIRouter(prefix="/v1/models", tags=["models"])


def _numeric_metrics(metrics: Any) -> dict[str, dict[str, float | None]]:
    """Keep the set → metric → number part of the metadata's metrics (anything else is not a metric)."""
    if not isinstance(metrics, dict):
        return {}
    return {
        str(name): {str(k): float(v) for k, v in values.items() if isinstance(v, int | float)}
        for name, values in metrics.items() if isinstance(values, dict)
    }


def _mlflow(value: Any) -> dict[str, str | int | None] | None:
    if not isinstance(value, dict):
        return None
    return {str(k): v if v is None or isinstance(v, str | int) else str(v) for k, v in value.items()}


def describe(model: ServedModel, default: str) -> ModelInfo:
    """The public description of one served model."""
    meta = model.metadata
    return ModelInfo(
        name=model.name,
        display_name=str(meta.get("display_name") or model.name),
        family=model.predictor.family,
        version=model.version,
        variant=model.predictor.variant,
        default=model.name == default,
        aliases=[str(a) for a in meta.get("aliases", [])],
        preprocessing_version=str(meta["preprocessing_version"]),
        max_length=meta.get("max_length"),
        created_at=str(meta["created_at"]) if meta.get("created_at") else None,
        metrics=_numeric_metrics(meta.get("metrics")),
        mlflow=_mlflow(meta.get("mlflow")),
    )


@router.get("", summary="List the served models")
async def list_models(registry: ReadyRegistryDep) -> ModelsResponse:
    """Names, versions, evaluation metrics and aliases of every served model, and which one is the default."""
    default = registry.default_name
    return ModelsResponse(default=default, models=[describe(m, default) for m in registry.models()])
