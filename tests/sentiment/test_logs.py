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


def test_the_server_access_log_is_off_while_the_app_logs_requests_and_as_it_was_after() -> None:
    from sentiment.logs import SERVER_ACCESS_LOGGER, server_access_log_off

    access = logging.getLogger(SERVER_ACCESS_LOGGER)
    assert not access.disabled
    with server_access_log_off():
        assert not access.isEnabledFor(logging.CRITICAL)
        # Streamlit gives uvicorn.access a handler of its own whenever it parses its configuration: still off.
        extra = logging.StreamHandler()
        access.addHandler(extra)
        try:
            assert not access.isEnabledFor(logging.INFO)
        finally:
            access.removeHandler(extra)
    assert not access.disabled


def test_configure_logging_formats_the_trees_it_is_given(capsys) -> None:
    from sentiment.logs import configure_logging

    configure_logging("INFO", "json", trees=("tests_logs_tree",))
    try:
        logging.getLogger("tests_logs_tree.child").info("one line", extra={"status": 200})
        (line,) = capsys.readouterr().err.splitlines()
        assert json.loads(line) | {"time": None} == {"time": None, "level": "INFO", "logger": "tests_logs_tree.child",
                                                     "message": "one line", "status": 200}
        configure_logging("INFO", "json", trees=("tests_logs_tree",))  # again: the handler is replaced, not added
        logging.getLogger("tests_logs_tree").info("still one line")
        assert len(capsys.readouterr().err.splitlines()) == 1
    finally:
        tree = logging.getLogger("tests_logs_tree")
        tree.handlers.clear()
        tree.propagate = True


def test_a_text_line_carries_the_fields_of_the_json_line_on_one_line() -> None:
    from sentiment.logs import TextFormatter

    record = logging.LogRecord("api.access", logging.INFO, __file__, 1, "request", None, None)
    record.__dict__.update(method="POST", path="/v1/predict", status=200, odd="two words\nforged line")
    token = request_id_var.set("abc-123")
    try:
        line = TextFormatter().format(record)
    finally:
        request_id_var.reset(token)
    assert line.split(" ", 2)[2] == ('INFO api.access: request request_id=abc-123 method=POST path=/v1/predict '
                                     'status=200 odd="two words\\nforged line"')
    assert "\n" not in line
