"""Following an MLflow registry alias (``FOLLOW_MODEL_URI=models:/tweet-sentiment@champion``) into EXPORTS_DIR.

At start and whenever the alias moves, the version it names is downloaded and published with
:func:`sentiment.publish.adopt` (every file checked against the metadata's sha256, then the manifest replaced by a
rename); the API's watcher, mounted in this process, swaps it in. Off by default: the offline default stays
the committed ``exports/``. The lean image has no MLflow: there a sidecar does the same (README, "Live model
reload").
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from pathlib import Path

from app.settings import AppSettings, redact_uri
from sentiment.publish import adopt

logger = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


def parse_alias_uri(uri: str) -> tuple[str, str]:
    """``models:/<name>@<alias>`` → (name, alias).

    Raises:
        ValueError: ``uri`` is not of that form.
    """
    match = _ALIAS_URI.match(uri)
    if match is None:
        raise ValueError(f"FOLLOW_MODEL_URI must look like models:/<registered model>@<alias>, not {uri!r}")
    return match["name"], match["alias"]


class AliasFollower:
    """Publishes into ``exports_dir`` the registered version an alias names, each time it moves."""

    def __init__(self, uri: str, tracking_uri: str, exports_dir: Path, interval_s: float) -> None:
        self.name, self.alias = parse_alias_uri(uri)
        self.uri, self.tracking_uri, self.exports_dir, self.interval_s = uri, tracking_uri, exports_dir, interval_s
        self.followed: str | None = None  # the version last published by this process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: AppSettings) -> AliasFollower | None:
        """The follower ``FOLLOW_MODEL_URI`` asks for, or None when it is unset."""
        if not settings.follow_model_uri:
            return None
        return cls(settings.follow_model_uri, settings.mlflow_tracking_uri, settings.exports_dir,
                   settings.follow_model_interval_s)

    def check(self) -> str | None:
        """Publish the version the alias names if it moved; the version published, or None when unchanged.

        Raises:
            mlflow.exceptions.MlflowException: the registry cannot be reached or has no such alias.
            sentiment.exports.ExportError: the bundle is invalid or a file does not match its sha256.
        """
        import mlflow.artifacts
        from mlflow import MlflowClient

        version = str(MlflowClient(self.tracking_uri).get_model_version_by_alias(self.name, self.alias).version)
        if version == self.followed:
            return None
        with tempfile.TemporaryDirectory(prefix="follow-") as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.name}/{version}", dst_path=tmp,
                                                        tracking_uri=self.tracking_uri)
            adopt(self.exports_dir, local, version, champion=True, reason="mlflow")
        self.followed = version
        logger.info("%s is version %s: published to %s", self.uri, version, self.exports_dir)
        return version

    def start(self) -> None:
        """Check now, then every ``interval_s`` seconds, in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="follow-model-alias", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as error:  # the served models stay; the next tick tries again
                # The type only: MLflow's messages may quote the tracking URI with its credentials.
                logger.warning("could not follow %s at %s (%s); trying again in %g s", self.uri,
                               redact_uri(self.tracking_uri), type(error).__name__, self.interval_s)
            self._stop.wait(self.interval_s)
