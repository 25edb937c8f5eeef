"""Structured logs: one JSON object per line, carrying the id of the request being served.

Only the ``api`` and ``sentiment`` logger trees (the service and its engine) are configured, so a host that mounts this app (the Streamlit product) keeps its
own logging; ``LOG_FORMAT=none`` leaves even that to the host. Tweet texts are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# A client-supplied id is echoed in logs and headers: keep it short and printable.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Attributes every LogRecord has; anything else came from ``extra=`` and belongs in the JSON line.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_HANDLER_MARK = "_api_handler"
# The HTTP service and the engine it serves; a host's own loggers are left alone.
LOGGER_TREES = ("api", "sentiment")


def new_request_id(candidate: str | None) -> str:
    """Return the client's request id when it is safe to echo, else a fresh one."""
    if candidate and _VALID_REQUEST_ID.match(candidate):
        return candidate
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: time, level, logger, message, request id and ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ASCII output: a lone surrogate in some value can never make the handler fail to encode the line.
        return json.dumps(entry, default=str, ensure_ascii=True)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send the ``api`` and ``sentiment`` loggers to stderr in ``fmt`` (``json``/``text``); ``none`` changes nothing.

    Idempotent: calling it again (one app per test) replaces the handler instead of adding one.
    """
    if fmt == "none":
        return
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for tree in LOGGER_TREES:
        logger = logging.getLogger(tree)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        # Our handler prints these records; the root handler would print them a second time.
        logger.propagate = False
