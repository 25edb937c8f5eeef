"""The inference engine: everything that turns a tweet into a verdict, shared by every deployable.

Preprocessing, the export format and its checks, predictors, the champion rule, the manifest and publishing,
the registry of served models with live reload and micro-batching, classification and scoring, and the settings
base class. The HTTP service (``api``), the product (``app``), ``training`` and ``batch`` import it; it imports
none of them (checked by import-linter, ``pyproject.toml``). Serving needs only ONNX Runtime, tokenizers, numpy,
pydantic-settings and prometheus-client.
"""
