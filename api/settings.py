"""Settings of the lean API service: one object, read from environment variables.

Every field is read from the environment variable of the same name in upper case (``API_KEYS``,
``MAX_BODY_BYTES``, ...); ``docs/configuration.md`` lists them. Nothing is read at import time:
:func:`api.main.create_app` builds a :class:`Settings` when it is not given one.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from sentiment.settings import MAX_BATCH_TEXTS, EngineSettings, split_csv

__all__ = ["MAX_BATCH_TEXTS", "Settings"]
# Values people paste from examples: serving with one of them would be an open door.
_PLACEHOLDER_KEYS = {"changethis", "changeme", "secret", "api-key", "your-api-key"}


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name or a wildcard: reachable from elsewhere, as far as we know


class Settings(EngineSettings):
    """Configuration of one API process (or of the API mounted inside the Streamlit product).

    The engine's fields (exports, queue bounds, deadlines, text limit) come from
    :class:`sentiment.settings.EngineSettings`; the fields here are the HTTP service's own.
    """

    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest accepted request body (413 above).")
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Comma-separated API keys. Empty leaves the API open, which only a server on "
        "loopback may do (else ALLOW_ANONYMOUS_API=true). Health routes stay open."
    )
    allow_anonymous_api: bool = Field(
        default=False,
        description="Serve without API_KEYS on a non-loopback UVICORN_HOST (the images listen on 0.0.0.0): an "
        "explicit opt-out, for a server behind a gateway that authenticates.",
    )
    uvicorn_host: str = Field(
        default="127.0.0.1", description="Address the server listens on (uvicorn's variable; python -m api.serve "
        "sets it from --host). Read to refuse an open API on a public address.",
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="Key of POST /v1/admin/reload (X-API-Key or Bearer). Unset: the API_KEYS open it; with no "
        "API_KEYS either the route answers 403 (the watcher still reloads).",
    )
    log_format: Literal["json", "text", "none"] = Field(
        default="json",
        description="Format of the logs, one line per request (in `make run` the UI's requests and `app` loggers "
        "too). json: one JSON object per line; text: plain; none: leave logging to the host, uvicorn's access log "
        "included.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("api_keys")
    @classmethod
    def _reject_placeholders(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for key in keys:
            if key.get_secret_value().lower() in _PLACEHOLDER_KEYS:
                raise ValueError("API_KEYS holds a placeholder value; set real keys or leave API_KEYS empty")
        return keys

    @model_validator(mode="after")
    def _no_open_api_on_a_public_address(self) -> Settings:
        if not self.api_keys and not self.allow_anonymous_api and not _is_loopback(self.uvicorn_host):
            raise ValueError(
                f"the API would answer anyone on {self.uvicorn_host} without a key: set API_KEYS (comma-separated "
                "keys), or ALLOW_ANONYMOUS_API=true if a gateway in front authenticates")
        return self

    @field_validator("admin_key")
    @classmethod
    def _reject_placeholder_admin_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and key.get_secret_value().lower() in _PLACEHOLDER_KEYS:
            raise ValueError("ADMIN_KEY holds a placeholder value; set a real key or leave it unset")
        if key is not None and not key.get_secret_value():
            return None
        return key
