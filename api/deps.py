"""Dependencies shared by the routers, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import Message
from typing import Annotated

import numpy as np
from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from starlette.types import Receive

from api.settings import Settings
from sentiment.batching import AbandonedError, DeadlineError, QueueFullError
from sentiment.classify import classify
from sentiment.metrics import Metrics
from sentiment.registry import ModelRegistry, NotReadyError, ServedModel, UnknownModelError
from sentiment.scoring import TOO_LONG, check_text

# nginx's code for "client closed request": only logs and metrics ever see it, the client is gone.
CLIENT_CLOSED_REQUEST = 499


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, and those
# thread hand-offs (several per request) cost more than the model call at 16 connections (py-spy, make bench).
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def ready_registry(registry: RegistryDep, settings: SettingsDep) -> ModelRegistry:
    return await _ready(registry, settings)


async def _ready(registry: ModelRegistry, settings: Settings) -> ModelRegistry:
    """The registry once its models are ready; loads them on first use when nothing else started it.

    Raises:
        HTTPException: 503 while loading beyond ``READY_TIMEOUT_S`` or when loading failed.
    """
    try:
        await registry.wait_ready(settings.ready_timeout_s)
    except NotReadyError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": "1"}) from error
    return registry


ReadyRegistryDep = Annotated[ModelRegistry, Depends(ready_registry)]


def resolve_model(registry: ModelRegistry, name: str | None) -> ServedModel:
    """The requested model, or a 404 naming the available ones."""
    try:
        return registry.get(name)
    except UnknownModelError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error


def check_text_lengths(texts: Sequence[str], limit: int, field: str) -> None:
    """Reject texts longer than ``limit`` characters with a 422 shaped like pydantic's own errors.

    Args:
        texts: the request's texts.
        limit: ``MAX_TEXT_CHARS``.
        field: the body field, ``text`` (one text) or ``texts`` (a list, errors then give the index).
    """
    errors = [
        {"type": "string_too_long", "loc": ("body", field) if field == "text" else ("body", field, index),
         "msg": f"String should have at most {limit} characters", "input": f"<{len(text)} characters>",
         "ctx": {"max_length": limit}}
        for index, text in enumerate(texts) if check_text(text, limit) == TOO_LONG
    ]
    if errors:
        raise RequestValidationError(errors)


async def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON (``application/json`` or ``application/*+json``).

    FastAPI would otherwise validate a text/plain or form body as raw bytes and answer a confusing 422.
    """
    header = request.headers.get("content-type")
    if header:
        message = Message()
        message["content-type"] = header
        subtype = message.get_content_subtype()
        if message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json")):
            return
    raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                        f"send the body as application/json (got {header or 'no Content-Type'})")


async def _client_gone(receive: Receive) -> None:
    """Returns when the client disconnects (the body was already read, so only ``http.disconnect`` comes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def classify_request(request: Request, model: ServedModel, texts: Sequence[str], settings: Settings,
                           metrics: Metrics, counted: int | None = None) -> np.ndarray:
    """:func:`sentiment.classify.classify` for an HTTP request: dropped if the client leaves, 503 when overloaded.

    Raises:
        HTTPException: 503 with ``Retry-After`` when the model's queue is full or its deadline passed; 499
            (never seen by the client) when it disconnected.
    """
    try:
        return await classify(model, texts, metrics, timeout=model.budget.deadline_s,
                              abandoned=_client_gone(request.receive), counted=counted)
    except (QueueFullError, DeadlineError) as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error),
                            headers={"Retry-After": str(error.retry_after)}) from error
    except AbandonedError as error:
        raise HTTPException(CLIENT_CLOSED_REQUEST, "client closed the request") from error


async def predict_texts(request: Request, texts: Sequence[str], model_name: str | None,
                        field: str, counted: int | None = None) -> tuple[ServedModel, np.ndarray]:
    """The hot path of every prediction route: length check, readiness, model, then the bounded queue.

    A plain function rather than FastAPI dependencies: solving the settings, registry, metrics and readiness
    dependencies took about 0.35 ms per request (cProfile), more than a TF-IDF model call.

    Raises:
        RequestValidationError: a text longer than ``MAX_TEXT_CHARS`` (422).
        HTTPException: 503 (not ready, queue full, deadline), 404 (unknown model), 499 (client gone).
    """
    state = request.app.state
    settings: Settings = state.settings
    check_text_lengths(texts, settings.max_text_chars, field)
    registry = await _ready(state.registry, settings)
    model = resolve_model(registry, model_name)
    return model, await classify_request(request, model, texts, settings, state.metrics, counted)
