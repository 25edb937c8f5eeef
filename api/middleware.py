"""Request context middleware: request id, access log, metrics, and a JSON 500 that never leaks a trace.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request, which matters at a few ms each.
"""

from __future__ import annotations

import logging
import time

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentiment.logs import REQUEST_ID_HEADER, new_request_id, request_id_var
from sentiment.metrics import Metrics

access_logger = logging.getLogger("api.access")
logger = logging.getLogger(__name__)

_HEADER_BYTES = REQUEST_ID_HEADER.lower().encode("latin-1")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "unmatched"
# A log line must not grow with what a client sends.
_LOGGED_PATH_CHARS = 200


class RequestContextMiddleware:
    """Give every HTTP request an id (``X-Request-ID``, the client's if sane), log and measure it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v for k, v in scope["headers"] if k == _HEADER_BYTES), None)
        request_id = new_request_id(supplied.decode("latin-1") if supplied is not None else None)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_code = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), (_HEADER_BYTES, request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            if response_started:
                # Nothing can be added to a response already sent; Starlette's body limit also signals "413
                # sent" this way, to be caught further out.
                raise
            # Answer here rather than in Starlette's outer error middleware so the reply carries the request id.
            if isinstance(error, HTTPException):
                response = JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)
            else:
                logger.exception("unhandled error", extra={"path": scope.get("path")})
                response = JSONResponse({"detail": "internal error", "request_id": request_id}, status_code=500)
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            # The route template, not the raw path, and a known method or "other": h11 accepts any method
            # token and any path, and each distinct label value would be a new time series for ever.
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
            self.metrics.observe_request(template, method, status_code, elapsed)
            if access_logger.isEnabledFor(logging.INFO):
                path = scope.get("path", "")
                access_logger.info(
                    "request",
                    extra={"method": method, "path": path[:_LOGGED_PATH_CHARS], "route": template,
                           "status": status_code, "duration_ms": round(elapsed * 1000, 3)},
                )
            request_id_var.reset(token)
