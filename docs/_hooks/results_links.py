"""MkDocs hook: the measurements in ``results/`` are part of the site, and links to them work in both places.

The measurements live in ``results/`` at the repository root, written by the commands that measure them; the manual
links to them and never copies them. A page links to them as GitHub resolves a link, relative to the page's own
file (``docs/benchmarks.md`` → ``../results/bench.md``, ``docs/decisions/0001-….md`` → ``../../results/models.md``).
MkDocs only builds files inside ``docs/`` and, with ``--strict``, fails on a link that leaves it. So this hook

- adds every ``results/*.md`` (built as pages) and ``results/*.json`` (copied as they are) to the build, under
  ``results/`` in the site, read from the repository's ``results/`` at build time;
- rewrites, in the Markdown of each page before MkDocs resolves its links, a link that leaves ``docs/`` for
  ``results/`` into the same link inside the site, so MkDocs checks it like any other link.

No symlink, no copy, nothing downloaded. Declared in ``mkdocs.yml`` (``hooks:``); ``exclude_docs`` keeps this file
out of the site.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
DOCS = "docs"
# An inline link or image whose target climbs out of the page's folder into results/: ](../results/bench.md#x)
_RESULTS_LINK = re.compile(r"\]\((?P<target>(?:\.\./)+results/[^)\s#]*)(?P<rest>[^)]*)\)")


def on_files(files: Files, config, **_: object) -> Files:
    for path in sorted([*RESULTS.glob("*.md"), *RESULTS.glob("*.json")]):
        uri = f"results/{path.name}"
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, **_: object) -> str:
    page_dir = posixpath.dirname(page.file.src_uri)  # relative to docs/

    def inside_site(match: re.Match[str]) -> str:
        in_repo = posixpath.normpath(posixpath.join(DOCS, page_dir, match["target"]))
        if not in_repo.startswith("results/"):
            return match[0]
        target = posixpath.relpath(posixpath.join(DOCS, in_repo), posixpath.join(DOCS, page_dir) or DOCS)
        return f"]({target}{match['rest']})"

    return _RESULTS_LINK.sub(inside_site, markdown)
