"""Batch scoring beyond one machine: a corpus scored on Apache Spark with the API's own ONNX predictor.

Imports ``api`` (the inference core); ``api`` never imports this package.
"""
