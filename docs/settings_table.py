"""Generate the one table of environment variables in ``docs/configuration.md`` from the settings classes.

    python docs/settings_table.py          # rewrite the table between the markers
    python docs/settings_table.py --check  # exit 1 when the committed table differs (tests/test_docs.py)

Every field of every settings class is one variable (its name in upper case, or its alias). A variable read by
several classes is one row that lists every reader. The two secrets are read by ``app.settings`` functions,
not fields: they are listed from there too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED: settings -->"
END = "<!-- END GENERATED: settings -->"
SHOWN_ROOT = Path("/PROJECT")  # stands for the checkout while defaults are computed


def _classes() -> list[tuple[str, type]]:
    sys.path.insert(0, str(ROOT))
    from api.settings import Settings
    from app.settings import AppSettings
    from training.config import RetrainSettings, TrainingSettings

    # Reader names as a person looks for them; the base fields are listed once, read by everyone.
    return [("API (`make serve`, `/api` of `make run`)", Settings), ("product (`make run`)", AppSettings),
            ("training (`make train`, `export`, `evaluate`)", TrainingSettings),
            ("retraining (`make retrain`)", RetrainSettings)]


def _variable(name: str, info: FieldInfo) -> str:
    alias = info.validation_alias
    return alias if isinstance(alias, str) else name.upper()


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        try:
            value = info.default_factory({"project_root": SHOWN_ROOT})  # type: ignore[call-arg]
        except TypeError:
            value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    from sentiment.settings import PROJECT_ROOT

    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        if value in (SHOWN_ROOT, PROJECT_ROOT):
            return "the checkout"
        return f"`{os.path.relpath(value, SHOWN_ROOT)}`"
    return f"`{str(value).replace(f'sqlite:///{SHOWN_ROOT}/', 'sqlite:///')}`"


def _rows() -> Iterator[tuple[str, str, str, str]]:
    from app.settings import CONNECTION_STRING_KEY, MAINTAINER_SECRET_KEY
    from sentiment.settings import EngineSettings, ProjectSettings

    readers: dict[str, list[str]] = {}
    fields: dict[str, FieldInfo] = {}
    for reader, cls in _classes():
        for name, info in cls.model_fields.items():
            variable = _variable(name, info)
            readers.setdefault(variable, [])
            label = ("everyone" if name in ProjectSettings.model_fields else
                     "the engine: API, product, `api.cli`, Spark" if name in EngineSettings.model_fields else reader)
            if label not in readers[variable]:
                readers[variable].append(label)
            fields.setdefault(variable, info)
    order = ["everyone", "the engine: API, product, `api.cli`, Spark"]
    for variable in sorted(readers, key=lambda v: (order.index(readers[v][0]) if readers[v][0] in order else 2,
                                                   readers[v][0], v)):
        info = fields[variable]
        description = (info.description or "").replace("|", "\\|")
        yield variable, _default(info), ", ".join(readers[variable]), description
    secret = "Secret: from the environment, else `.streamlit/secrets.toml`; placeholders count as unset."
    yield (CONNECTION_STRING_KEY, "unset", "product (`make run`)",
           f"Application Insights connection string; unset keeps telemetry off. {secret}")
    yield MAINTAINER_SECRET_KEY, "unset", "product (`make run`)", f"Unlocks the Review page; unset disables the page. {secret}"


def table() -> str:
    lines = ["| Variable | Default | Read by | What it does |", "|---|---|---|---|"]
    lines += [f"| `{variable}` | {default} | {readers} | {description} |"
              for variable, default, readers, description in _rows()]
    return "\n".join(lines)


def render(document: str) -> str:
    """``document`` with the table between the markers replaced by the generated one."""
    if BEGIN not in document or END not in document:
        raise SystemExit(f"{TARGET}: the markers {BEGIN} and {END} are missing")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed table is out of date")
    args = parser.parse_args(argv)
    current = TARGET.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            sys.stderr.write(f"{TARGET} is out of date: run `python docs/settings_table.py`\n")
            return 1
        return 0
    TARGET.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
