"""Error bodies that can always be encoded: FastAPI's 422 shape, minus what would break or bloat it."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

# Echoing a 1 MiB input back in a 422 helps nobody.
_MAX_ECHOED_INPUT = 200


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: a lone surrogate echoed from the input cannot break it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _json_safe(value: Any) -> Any:
    """Inputs echoed in a 422 may hold NaN or Infinity (Python's JSON parser accepts them): make them text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


async def validation_error_handler(_: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 body (``{"detail": [errors]}``), safe to encode and with long inputs cut short."""
    assert isinstance(error, RequestValidationError)
    details = _json_safe(jsonable_encoder(error.errors()))
    for detail in details:
        value = detail.get("input")
        if isinstance(value, str) and len(value) > _MAX_ECHOED_INPUT:
            detail["input"] = value[:_MAX_ECHOED_INPUT] + "…"
        elif isinstance(value, dict | list) and len(json.dumps(value, default=str)) > _MAX_ECHOED_INPUT:
            detail["input"] = "<omitted>"
    return AsciiJSONResponse({"detail": details}, status_code=422)
