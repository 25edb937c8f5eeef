"""``POST /v1/admin/reload``: check ``EXPORTS_DIR`` now instead of waiting for the watcher.

Who may call it: the holder of ``ADMIN_KEY`` when it is set, else of any ``API_KEYS`` key; with neither set
the route answers 403, so an open API never lets anonymous callers make it load files. The watcher
(``RELOAD_INTERVAL_S``) reloads either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse

from api.deps import RegistryDep, SettingsDep
from api.schemas import ErrorResponse, ReloadResult
from api.security import KeyChecker
from api.settings import Settings
from sentiment.metrics import multiprocess_dir
from sentiment.registry import NotReadyError
from sentiment.reload import request_everywhere

router = APIRouter(prefix="/v1/admin", tags=["admin"])
_STATUS = {"refused": status.HTTP_409_CONFLICT, "not_ready": status.HTTP_503_SERVICE_UNAVAILABLE}


def admin_checker(settings: Settings) -> KeyChecker:
    """The keys that open the admin routes (none: the routes are disabled)."""
    return KeyChecker([settings.admin_key] if settings.admin_key is not None else settings.api_keys)


async def disabled() -> None:
    """Dependency of the admin routes when no key is configured."""
    raise HTTPException(status.HTTP_403_FORBIDDEN, "the admin routes are disabled: set ADMIN_KEY (or API_KEYS) to "
                        "enable them; EXPORTS_DIR is still checked every RELOAD_INTERVAL_S")


@router.post("/reload", summary="Reload the exports now", responses={
    200: {"model": ReloadResult, "description": "Swapped in, or nothing changed."},
    401: {"model": ErrorResponse, "description": "Missing or wrong admin key."},
    403: {"model": ErrorResponse, "description": "No ADMIN_KEY nor API_KEYS configured."},
    409: {"model": ReloadResult, "description": "The change was refused; the served models stay (see detail)."},
    503: {"model": ReloadResult, "description": "The first load is still running."}})
async def reload(registry: RegistryDep, settings: SettingsDep) -> JSONResponse:
    """Check `EXPORTS_DIR` now (a change refused before is tried again) and swap in what changed.

    Answers once the new models are loaded, verified, warmed up and serving in the worker process that took the
    request; the server's other workers follow within a fraction of a second. Requests keep being answered
    meanwhile, by the old models until the swap. During the first load it waits for it (`READY_TIMEOUT_S`);
    after a failed first load it tries again.
    """
    with contextlib.suppress(NotReadyError):
        await registry.wait_ready(settings.ready_timeout_s)
    request_everywhere(multiprocess_dir())  # the other workers of this server check too
    # Shielded: a caller that hangs up does not throw away a load half done.
    report = await asyncio.shield(registry.reload(retry_refused=True))
    return JSONResponse(ReloadResult(**asdict(report)).model_dump(), status_code=_STATUS.get(report.outcome, 200))
