"""Structured logs: one JSON object per line, carrying the id of the request being served.

Only the ``api`` and ``sentiment`` logger trees (the service and its engine) are configured, so a host that mounts
this app (the Streamlit product) keeps its own logging; ``LOG_FORMAT=none`` leaves even that to the host. Tweet
texts are never logged.

One line per request: the app writes it (``api.access``, with the request id, route and duration), so while it
does, :func:`server_access_log_off` keeps the ASGI server's own access line (uvicorn's ``uvicorn.access``, a
second line in another format) from being written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
# uvicorn's access log: one text line per request, beside the one the app writes itself.
SERVER_ACCESS_LOGGER = "uvicorn.access"


def new_request_id(candidate: str | None) -> str:
    """Return the client's request id when it is safe to echo, else a fresh one."""
    if candidate and _VALID_REQUEST_ID.match(candidate):
        return candidate
    return uuid.uuid4().hex


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """The request id being served and the record's ``extra`` fields."""
    request_id = request_id_var.get()
    fields: dict[str, object] = {} if request_id is None else {"request_id": request_id}
    fields.update({k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES})
    return fields


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: time, level, logger, message, request id and ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ASCII output: a lone surrogate in some value can never make the handler fail to encode the line.
        return json.dumps(entry, default=str, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    """Format a record as one plain line, ``time level logger: message key=value …``, with the fields of the
    JSON line. A value other than printable ASCII without spaces, quotes or ``=`` is JSON-quoted (in ASCII): no
    value can start a line of its own or fail to encode."""

    _PLAIN = re.compile(r"^[\x21\x23-\x3c\x3e-\x7e]+$")

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {record.getMessage()}"
        for key, value in _fields(record).items():
            shown = str(value)
            line += f" {key}={shown if self._PLAIN.match(shown) else json.dumps(shown, ensure_ascii=True)}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "json", trees: Sequence[str] = LOGGER_TREES) -> None:
    """Send the ``trees`` loggers (``api`` and ``sentiment``) to stderr in ``fmt`` (``json``/``text``); ``none``
    changes nothing.

    Idempotent: calling it again (one app per test) replaces the handler instead of adding one.
    """
    if fmt == "none":
        return
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for tree in trees:
        logger = logging.getLogger(tree)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        # Our handler prints these records; the root handler would print them a second time.
        logger.propagate = False


@contextmanager
def server_access_log_off() -> Iterator[None]:
    """Keep uvicorn's access line unwritten while the app logs each request itself; as it was on the way out.

    The logger is disabled rather than stripped of its handlers: Streamlit gives it a handler of its own each time
    it parses its configuration (in the product, when the server starts), which would bring a second line back.
    """
    access = logging.getLogger(SERVER_ACCESS_LOGGER)
    was_disabled = access.disabled
    access.disabled = True
    try:
        yield
    finally:
        access.disabled = was_disabled
