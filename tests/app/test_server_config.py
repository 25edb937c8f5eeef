"""How ``uvicorn app.server:app`` is arranged: the entry script, its Streamlit configuration, its access log."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.conftest import REPO

ENTRY = REPO / "app" / "entry" / "main.py"
# What app/entry/.streamlit/config.toml promises (README, "Streamlit product").
EXPECTED_OPTIONS = {"server.maxUploadSize": 20, "browser.gatherUsageStats": False, "client.toolbarMode": "viewer",
                    "client.showErrorDetails": "type"}
PRINT_OPTIONS = f"""
import json
import app.server
from streamlit import config
print(json.dumps({{"script": str(app.server.SCRIPT), **{{k: config.get_option(k) for k in {list(EXPECTED_OPTIONS)!r}}}}}))
"""


def test_no_pages_folder_beside_the_entry_script() -> None:
    # Streamlit runs a pages/ folder beside the entry script as a v1 multipage app until st.navigation has been
    # called once in the process: the first visit of a page URL would skip the navigation.
    from app import server

    assert ENTRY.resolve() == server.SCRIPT
    assert not (ENTRY.parent / "pages").exists()
    assert sorted(p.name for p in (ENTRY.parent.parent / "pages").glob("*.py")) == [
        "about.py", "compare.py", "predict.py", "review.py"]


def test_streamlit_configuration_is_read_beside_the_entry_script_from_any_directory(tmp_path: Path) -> None:
    assert (ENTRY.parent / ".streamlit" / "config.toml").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env |= {"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
            "EXPORTS_DIR": str(tmp_path / "no-exports"), "FEEDBACK_DB": str(tmp_path / "feedback.db")}
    done = subprocess.run([sys.executable, "-c", PRINT_OPTIONS], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    options = json.loads(done.stdout.strip().splitlines()[-1])
    assert options.pop("script") == str(ENTRY.resolve())
    assert options == EXPECTED_OPTIONS


@pytest.mark.parametrize("path", ["/predict?text=Two%20hours%20stuck&model=tfidf-lr", "/review?secret=s3cret",
                                  "/api/v1/models?token=abc"])
def test_access_log_lines_carry_no_query_string(path: str, caplog: pytest.LogCaptureFixture) -> None:
    from app import server

    access = logging.getLogger(server.ACCESS_LOGGER)
    assert any(isinstance(f, server.QueryStringFilter) for f in access.filters)
    with caplog.at_level(logging.INFO, logger=server.ACCESS_LOGGER):
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "GET", path, "1.1", 200)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == f'127.0.0.1:5555 - "GET {path.split("?")[0]}?[query omitted] HTTP/1.1" 200'
    for secret in ("Two", "s3cret", "abc", "tfidf-lr"):
        assert secret not in line
