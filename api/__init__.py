"""Inference core: preprocessing, model loading and the FastAPI service.

Only ONNX Runtime, tokenizers and numpy are needed here; nothing imports training or app code.
"""
