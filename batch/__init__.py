"""Batch scoring beyond one machine: a corpus scored on Apache Spark with the engine's own ONNX predictor.

Imports ``sentiment`` (the engine); neither ``sentiment`` nor ``api`` imports this package.
"""
