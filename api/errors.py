"""Error bodies that can always be encoded: FastAPI's 422 shape, minus what would break or bloat it."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

# Echoing a 1 MiB input back in a 422 helps nobody: strings are cut, containers kept only when small.
_MAX_ECHOED_INPUT = 200
_MAX_ECHOED_NODES = 20
_MAX_LOC_PARTS = 10
# A batch of 256 bad texts gives 256 errors: enough to locate them all, and no more.
_MAX_ERRORS = 256
_OMITTED = "<omitted>"


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: a lone surrogate echoed from the input cannot break it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _bounded(value: Any, budget: int = _MAX_ECHOED_NODES) -> tuple[Any, int]:
    """A copy of ``value`` when it is small (at most ``budget`` scalars and containers), else ``"<omitted>"``.

    Walks at most ``budget`` nodes, so a body nested thousands of levels deep costs nothing and never
    reaches Python's recursion limit; NaN and Infinity (Python's JSON parser accepts them) become text.
    """
    if budget <= 0:
        return _OMITTED, 0
    if isinstance(value, float) and not math.isfinite(value):
        return str(value), budget - 1
    if isinstance(value, str):
        return (value if len(value) <= _MAX_ECHOED_INPUT else value[:_MAX_ECHOED_INPUT] + "…"), budget - 1
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        copy: dict[Any, Any] = {}
        budget -= 1
        for key, item in items:
            copy[key], budget = _bounded(item, budget)
            if budget <= 0 or copy[key] is _OMITTED:
                return _OMITTED, 0
        return (copy if isinstance(value, dict) else list(copy.values())), budget
    if value is None or isinstance(value, bool | int | float):
        return value, budget - 1
    return str(value)[:_MAX_ECHOED_INPUT], budget - 1


def _safe_error(error: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error as JSON-ready data of bounded size, whatever the input held."""
    safe: dict[str, Any] = {
        "type": str(error.get("type", "")),
        "loc": [part if isinstance(part, int) else str(part)[:_MAX_ECHOED_INPUT]
                for part in list(error.get("loc", ()))[:_MAX_LOC_PARTS]],
        "msg": str(error.get("msg", ""))[:_MAX_ECHOED_INPUT],
    }
    if "input" in error:
        safe["input"] = _bounded(error["input"])[0]
    if isinstance(error.get("ctx"), dict):
        safe["ctx"] = {str(k): _bounded(v if isinstance(v, str | int | float | bool) else str(v))[0]
                       for k, v in error["ctx"].items()}
    return safe


async def validation_error_handler(_: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 body (``{"detail": [errors]}``), safe to encode and of bounded size.

    Deeply nested input (``[[[[…]]]]`` hundreds of levels down) once made the generic JSON encoder hit the
    recursion limit: each error is copied here with a bounded walk instead.
    """
    assert isinstance(error, RequestValidationError)
    details = [_safe_error(item) for item in list(error.errors())[:_MAX_ERRORS]]
    return AsciiJSONResponse({"detail": details}, status_code=422)
