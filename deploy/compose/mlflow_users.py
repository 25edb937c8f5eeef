"""Give the Compose stack's MLflow server its read-only user, with the admin's credentials; run by ``mlflow-seed``
before it seeds the runs (deploy/compose/compose.yaml mounts this file into that container).

The server's basic-auth app (deploy/docker/mlflow.Dockerfile) creates the user ``admin`` itself. This script makes
sure that ``MLFLOW_READER_USERNAME`` (default ``reader``) exists, is not an admin and has the password
``MLFLOW_READER_PASSWORD``: created when missing, its password set again otherwise, so the value in the
environment is always the one that works. The product reads with it (the Compare page, the alias follower):
default_permission READ lets it read everything, and it can change nothing the admin created.

Standard library only. Reads MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the admin,
as the MLflow client does), MLFLOW_READER_USERNAME and MLFLOW_READER_PASSWORD. Never prints a password, nor an
answer of the server (MLflow's answer to a duplicate user quotes its password hash).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger("mlflow_users")

USERS_API = "/api/2.0/mlflow/users"
DEFAULT_READER = "reader"
# (status, JSON body or None): one exchange with the server.
Send = Callable[[str, str, dict[str, Any] | None], tuple[int, Any]]


class UsersError(RuntimeError):
    pass


def http_sender(base: str, username: str, password: str, timeout: float = 30.0) -> Send:
    """Requests to ``base`` with HTTP basic authentication; HTTP errors are answers, not exceptions."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")

    def send(method: str, path: str, payload: dict[str, Any] | None) -> tuple[int, Any]:
        url = base.rstrip("/") + path
        data = None
        if payload is not None and method == "GET":
            url += "?" + urllib.parse.urlencode(payload)
        elif payload is not None:
            data = json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Basic {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        try:
            return status, json.loads(body) if body else None
        except json.JSONDecodeError:
            return status, None

    return send


def _error_code(body: Any) -> str:
    return str(body.get("error_code", "")) if isinstance(body, dict) else ""


def ensure_reader(send: Send, username: str, password: str) -> str:
    """Create ``username`` (not an admin) with ``password``, or set its password when it exists.

    Returns what was done: ``created`` or ``password set``. Raises :class:`UsersError` with the HTTP status
    and MLflow's error code (never the body) when the server refuses.
    """
    status, body = send("GET", f"{USERS_API}/get", {"username": username})
    if status == 200:
        if (body or {}).get("user", {}).get("is_admin"):
            raise UsersError(f"the MLflow user {username!r} is an admin: the product must read with a plain user")
        action, done = "update-password", "password set"
        status, body = send("PATCH", f"{USERS_API}/{action}", {"username": username, "password": password})
    elif status == 404:
        action, done = "create", "created"
        status, body = send("POST", f"{USERS_API}/{action}", {"username": username, "password": password})
    else:
        raise UsersError(f"users/get: HTTP {status} {_error_code(body)} (are MLFLOW_TRACKING_USERNAME and "
                         "MLFLOW_TRACKING_PASSWORD the server's admin?)")
    if status != 200:
        raise UsersError(f"users/{action} of {username!r}: HTTP {status} {_error_code(body)}")
    return done


def main(environ: Mapping[str, str] = os.environ) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    missing = [name for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                 "MLFLOW_READER_PASSWORD") if not environ.get(name)]
    if missing:
        logger.error("set %s", ", ".join(missing))
        return 1
    reader = environ.get("MLFLOW_READER_USERNAME") or DEFAULT_READER
    send = http_sender(environ["MLFLOW_TRACKING_URI"], environ["MLFLOW_TRACKING_USERNAME"],
                       environ["MLFLOW_TRACKING_PASSWORD"])
    try:
        done = ensure_reader(send, reader, environ["MLFLOW_READER_PASSWORD"])
    except (UsersError, OSError) as error:
        logger.error("%s", error)
        return 1
    logger.info("MLflow user %r: %s (read-only)", reader, done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
