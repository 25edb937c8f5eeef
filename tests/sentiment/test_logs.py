"""Structured logs: JSON lines with the request id and the extra fields."""

from __future__ import annotations

import json
import logging

from sentiment.logs import JsonFormatter, new_request_id, request_id_var


def test_json_line_has_request_id_and_extras() -> None:
    record = logging.LogRecord("api.access", logging.INFO, __file__, 1, "request %s", ("done",), None)
    record.status = 200
    record.odd = "\ud800"  # a lone surrogate must not break the line
    token = request_id_var.set("abc-123")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "request done"
    assert entry["request_id"] == "abc-123"
    assert entry["status"] == 200
    assert entry["level"] == "INFO" and entry["logger"] == "api.access"
    assert line.isascii()


def test_request_id_is_kept_only_when_safe() -> None:
    assert new_request_id("client-id_1.2:3") == "client-id_1.2:3"
    for unsafe in (None, "", "a b", "x" * 129, "id\nforged-log-line"):
        generated = new_request_id(unsafe)
        assert generated != unsafe and len(generated) == 32
