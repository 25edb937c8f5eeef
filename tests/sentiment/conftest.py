"""Fixtures of the engine's tests: the tiny exports, predictors and registries of ``tests/api/conftest.py``."""

from tests.api.conftest import (  # noqa: F401  (fixtures, found by name)
    counting_loader,
    exports_dir,
    predictors,
    registry_factory,
    settings_factory,
)
