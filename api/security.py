"""Optional API keys: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

Keys come from ``API_KEYS`` (comma-separated). With none configured the API is open. Keys are compared as
SHA-256 digests with :func:`hmac.compare_digest` against every configured key, so the time taken reveals
neither which key nor how many leading characters matched, nor the key's length.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

API_KEY_HEADER = "X-API-Key"
# auto_error=False: a missing header is our 401 with one message, not FastAPI's 403.
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="One of the keys in API_KEYS.")
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>` with one of the keys in API_KEYS.")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class KeyChecker:
    """Holds the digests of the configured keys and checks a presented key in constant time."""

    def __init__(self, keys: Iterable[SecretStr]) -> None:
        self._digests = [_digest(key.get_secret_value()) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def is_valid(self, presented: str | None) -> bool:
        """True when ``presented`` equals one of the keys (every key is compared, whatever matches)."""
        if not presented:
            return False
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched


_KEY_HEADER_BYTES = API_KEY_HEADER.lower().encode("latin-1")
_DETAIL = f"missing or invalid API key: send it in {API_KEY_HEADER} or as Authorization: Bearer"


def _route_path(scope: Scope) -> str:
    """The path inside this app: a host that mounts it at ``/api`` puts that prefix in ``root_path``."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):]
    return path


class ApiKeyGate:
    """Refuse a request without a valid key before anything reads its body (pure ASGI).

    FastAPI parses and validates the body before it runs a route's dependencies, so a dependency alone
    would answer an anonymous caller's malformed JSON with a 422 full of parser details. The route
    dependency stays for the OpenAPI security schemes; this gate is what enforces the keys.
    """

    def __init__(self, app: ASGIApp, checker: KeyChecker, open_paths: Iterable[str]) -> None:
        self.app = app
        self.checker = checker
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope) in self.open_paths:
            await self.app(scope, receive, send)
            return
        api_key = bearer = None
        for name, value in scope["headers"]:
            if name == _KEY_HEADER_BYTES:
                api_key = value.decode("latin-1")
            elif name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    bearer = credentials.strip()
        if self.checker.is_valid(api_key) | self.checker.is_valid(bearer):
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": _DETAIL}, status_code=status.HTTP_401_UNAUTHORIZED,
                                headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def api_key_dependency(checker: KeyChecker):
    """Build the dependency that rejects requests without a valid key (401).

    Args:
        checker: the configured keys.

    Returns:
        A FastAPI dependency to put on the protected routers.
    """

    async def require_api_key(
        api_key: Annotated[str | None, Depends(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        token = bearer.credentials if bearer is not None else None
        # Either header may carry the key; both are checked so the time does not tell which one was used.
        if not (checker.is_valid(api_key) | checker.is_valid(token)):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail=_DETAIL,
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_api_key
