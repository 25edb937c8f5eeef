"""Property-based tests generated from the service's own OpenAPI schema: no input may cause a 5xx.

Bounded: a fixed number of examples per operation, no deadline (CI machines are slow), derandomised so a run
is reproducible. The schema is taken from an app built at import (building loads no model); the requests go
to an app of the same settings whose models are loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from api.main import create_app
from api.settings import Settings

MAX_EXAMPLES = 25


def _settings(exports_dir: Path) -> Settings:
    return Settings(exports_dir=exports_dir, api_keys=(), enabled_models=(), default_model=None, log_format="none",
                    max_text_chars=1000, max_batch_wait_ms=0)


schema = schemathesis.openapi.from_dict(create_app(_settings(Path("unused"))).openapi())


@pytest.fixture(scope="module")
def served_app(exports_dir: Path) -> FastAPI:
    app = create_app(_settings(exports_dir))
    with TestClient(app):
        app.state.registry.load()
        yield app


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_no_server_error(case, served_app: FastAPI) -> None:
    case.call_and_validate(app=served_app,
                           checks=[not_a_server_error, content_type_conformance, response_schema_conformance])
