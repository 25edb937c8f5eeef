"""Command line for analysts: classify a few texts, or score a whole CSV file.

Examples::

    python -m api.cli models
    python -m api.cli predict "My flight was delayed again" "Lovely crew!"
    python -m api.cli score tweets.csv scored.csv --text-column text
    python -m api.cli score raw.csv scored.csv --no-header --text-column 5 --encoding latin-1 --model tfidf-lr

``score`` streams the input (any size) in batches, shows a progress bar on stderr and writes every input
column plus ``label``, ``confidence``, ``p_positive``, ``model``, ``version`` and ``reason``: the layout of
Spark's output. Rows the API would refuse (no text, nothing visible, over ``MAX_TEXT_CHARS``) get no label and
a ``reason``.
The output appears under its name only once complete. Models come from ``EXPORTS_DIR`` like the service;
the default model is the service's default.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from api.settings import Settings
from sentiment.exports import ExportError, read_metadata
from sentiment.logs import configure_logging
from sentiment.predictor import Predictor
from sentiment.registry import open_model
from sentiment.reload import plan_exports
from sentiment.scoring import OUTPUT_COLUMNS, bom_encoding, score, to_labels

logger = logging.getLogger(__name__)

__all__ = ["main", "open_model", "score_csv"]


def _count_lines(path: Path) -> int:
    """Newlines in the file: the progress bar's total (approximate when quoted fields span lines)."""
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def _column_index(header: list[str] | None, column: str) -> int:
    if header is not None and column in header:
        return header.index(column)
    if column.isdigit():
        return int(column)
    raise ValueError(f"no column {column!r} in the header {header}; give a name or a 0-based index")


def _batches(rows: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    batch: list[list[str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _cell(value: object) -> str:
    """A CSV cell: empty for a missing value, six decimals for a probability."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _score_rows(predictor: Predictor, reader: Iterator[list[str]], writer: Any, *, text_column: str, header: bool,
                batch_size: int, max_chars: int, on_batch: Callable[[int], object]) -> dict[str, int]:
    counts = {"rows": 0, "scored": 0, "empty": 0, "malformed": 0}
    names = next(reader, None) if header else None
    index = _column_index(names, text_column)
    first_rows: list[list[str]] = []
    if names is None:
        first = next(reader, None)
        first_rows = [first] if first is not None else []
        names = [f"column_{i}" for i in range(len(first) if first else index + 1)]
    writer.writerow([*names, *OUTPUT_COLUMNS])
    width = len(names)  # the header's, or the first row's: a row of another width has its fields out of place
    for batch in _batches(itertools.chain(first_rows, reader), batch_size):
        texts = [row[index] if index < len(row) else None for row in batch]
        malformed = [len(row) != width for row in batch]
        scores = score(texts, predictor.predict_proba, max_chars=max_chars, chunk_rows=batch_size,
                       malformed=malformed)
        columns = scores.columns(predictor.name, predictor.version)
        for i, row in enumerate(batch):
            # Padded or cut to the header's width, so that the output columns stay under their names.
            cells = (row + [""] * width)[:width]
            writer.writerow([*cells, *(_cell(columns[name][i]) for name in OUTPUT_COLUMNS)])
        counts["rows"] += len(batch)
        counts["scored"] += sum(reason is None for reason in scores.reason)
        counts["malformed"] += sum(malformed)
        counts["empty"] += sum(reason is not None for reason in scores.reason) - sum(malformed)
        on_batch(len(batch))
    return counts


def score_csv(predictor: Predictor, source: Path, target: Path, *, text_column: str = "text", header: bool = True,
              encoding: str = "utf-8", batch_size: int = 256, max_chars: int = 1000,
              progress: bool = True) -> dict[str, int]:
    """Score every row of ``source`` and write ``target``: the input columns, then :data:`OUTPUT_COLUMNS`.

    Args:
        predictor: the model.
        source: input CSV.
        target: output CSV (written as ``<target>.partial``, renamed when complete).
        text_column: header name or 0-based index of the text.
        header: whether the first row is a header.
        encoding: of the input (undecodable bytes become U+FFFD instead of stopping the run); a byte-order mark
            at the start of the file (UTF-8, UTF-16, UTF-32) overrides it.
        batch_size: rows per model call.
        max_chars: longest text scored (``MAX_TEXT_CHARS``); longer rows get the reason ``too_long``.
        progress: show a progress bar on stderr.

    Returns:
        Counts of ``rows``, ``scored``, ``empty`` and ``malformed`` rows (not scored: the ``reason`` column says why;
        ``malformed``: more or fewer fields than the header, or than the first row without one).
    """
    partial = target.with_name(target.name + ".partial")
    with source.open("rb") as raw:
        announced = bom_encoding(raw.read(4))
    if announced is not None and announced != encoding:
        # A byte-order mark is unambiguous: read as latin-1, a UTF-16 file's mark and NULs became a "tweet".
        logger.info("%s starts with a %s byte-order mark: read as %s", source, announced.upper(), announced)
        encoding = announced
    total = max(_count_lines(source) - int(header), 0)
    try:
        with source.open(encoding=encoding, errors="replace", newline="") as src, \
                partial.open("w", encoding="utf-8", newline="") as dst, \
                tqdm(total=total, unit="tweet", disable=None if progress else True, desc=f"scoring with {predictor.name}") as bar:
            counts = _score_rows(predictor, csv.reader(src), csv.writer(dst), text_column=text_column,
                                 header=header, batch_size=batch_size, max_chars=max_chars,
                                 on_batch=bar.update)
    except BaseException:
        partial.unlink(missing_ok=True)  # no half-written output left behind
        raise
    partial.replace(target)
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--exports-dir", type=Path, help="folder of exports (default: EXPORTS_DIR or exports/)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the exported models")
    predict = commands.add_parser("predict", help="classify texts given as arguments; one JSON line each")
    predict.add_argument("texts", nargs="+")
    predict.add_argument("--model", help="model name (default: the service's default)")
    score = commands.add_parser("score", help="score a CSV file into another CSV file")
    score.add_argument("input", type=Path)
    score.add_argument("output", type=Path)
    score.add_argument("--model", help="model name (default: the service's default)")
    score.add_argument("--text-column", default="text", help="header name or 0-based index (default: text)")
    score.add_argument("--no-header", action="store_true", help="the input has no header row")
    score.add_argument("--encoding", default="utf-8", help="input encoding (Sentiment140's raw file: latin-1)")
    score.add_argument("--batch-size", type=int, default=256)
    score.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 model or file problem, 2 usage)."""
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, "text")
    exports_dir = args.exports_dir or settings.exports_dir
    try:
        if args.command == "models":
            for folder in (export.folder for export in plan_exports(exports_dir).exports):
                meta = read_metadata(folder)
                line = {k: meta.get(k) for k in ("name", "family", "version", "aliases", "default_variant")}
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
            return 0
        predictor = open_model(exports_dir, args.model, settings.default_model)
        if args.command == "predict":
            proba = predictor.predict_proba(args.texts)
            for text, p, label in zip(args.texts, proba, to_labels(proba)[0], strict=True):
                line = {"text": text, "label": label,
                        "probabilities": {"negative": round(float(p[0]), 6), "positive": round(float(p[1]), 6)},
                        "model": predictor.name, "version": predictor.version}
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
            return 0
        if args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        counts = score_csv(predictor, args.input, args.output, text_column=args.text_column,
                           header=not args.no_header, encoding=args.encoding, batch_size=args.batch_size,
                           max_chars=settings.max_text_chars, progress=not args.no_progress)
        logger.info("wrote %s: %d rows, %d scored, %d without text, %d malformed (more or fewer fields than the "
                    "header: reason 'malformed')", args.output, counts["rows"], counts["scored"], counts["empty"],
                    counts["malformed"])
        return 0
    except (ExportError, OSError, ValueError, csv.Error) as error:
        logger.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
