"""The HTTP service: routes, dependencies, schemas, security, middleware and the app factory.

It serves the engine (``sentiment``) and imports nothing from ``app``, ``training`` or ``batch``.
"""
