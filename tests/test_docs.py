"""The manual builds offline with --strict, loads nothing from another host, and the README stays an entry page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250


def test_the_manual_builds_strict_and_offline(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        html = page.read_text(encoding="utf-8")
        remote = re.findall(r'<(?:link|script|img)[^>]+(?:href|src)="(?:https?:)?//[^"]+"', html)
        assert remote == [], f"{page.relative_to(site)} loads from another host: {remote}"
        assert "fonts.googleapis" not in html


def test_the_readme_is_an_entry_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    for command in ("make run", "make test"):
        assert command in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), f"README links to a missing page: {link}"


def test_the_readme_counts_the_models_it_serves() -> None:
    """Audit: the README said "four models" while five were served."""
    from sentiment.exports import discover

    words = {2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight"}
    served = len(discover(ROOT / "exports"))
    assert f"{words[served]} models are committed in `exports/` and served" in (ROOT / "README.md").read_text()
