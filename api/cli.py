"""Command line for analysts: classify a few texts, or score a whole CSV file.

Examples::

    python -m api.cli models
    python -m api.cli predict "My flight was delayed again" "Lovely crew!"
    python -m api.cli score tweets.csv scored.csv --text-column text
    python -m api.cli score raw.csv scored.csv --no-header --text-column 5 --encoding latin-1 --model tfidf-lr

``score`` streams the input (any size) in batches, shows a progress bar on stderr and writes every input
column plus ``predicted_label``, ``p_negative`` and ``p_positive``; rows without text get empty predictions.
The output appears under its name only once complete. Models come from ``EXPORTS_DIR`` like the service;
the default model is the service's default.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from api.exports import ExportError, read_metadata
from api.logs import configure_logging
from api.predictor import Predictor, load_predictor
from api.registry import choose_default
from api.reload import plan_exports
from api.settings import Settings

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("predicted_label", "p_negative", "p_positive")


def open_model(exports_dir: Path, name: str | None, default_model: str | None = None) -> Predictor:
    """Load one export: ``name``, or the default the service would pick, without loading the others.

    Raises:
        ExportError: no such model, or its export is invalid.
    """
    metadata = {}
    folders = {}
    plan = plan_exports(exports_dir)  # the manifest's folders when there is one, like the service
    for folder in (export.folder for export in plan.exports):
        try:
            meta = read_metadata(folder)
        except ExportError as error:
            logger.warning("skipping %s: %s", folder, error)
            continue
        metadata[meta["name"]] = meta
        folders[meta["name"]] = folder
    if name is None and default_model is None and plan.champion in folders:
        chosen = plan.champion
    else:
        chosen = name or choose_default(metadata, default_model)
    if chosen not in folders:
        raise ExportError(f"no model {chosen!r} in {exports_dir}; available: {sorted(folders)}")
    return load_predictor(folders[chosen])


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


def _score_rows(predictor: Predictor, reader: Iterator[list[str]], writer: Any, *, text_column: str, header: bool,
                batch_size: int, on_batch: Callable[[int], object]) -> dict[str, int]:
    counts = {"rows": 0, "scored": 0, "empty": 0}
    names = next(reader, None) if header else None
    index = _column_index(names, text_column)
    first_rows: list[list[str]] = []
    if names is None:
        first = next(reader, None)
        first_rows = [first] if first is not None else []
        names = [f"column_{i}" for i in range(len(first) if first else index + 1)]
    writer.writerow([*names, *OUTPUT_COLUMNS])
    for batch in _batches(itertools.chain(first_rows, reader), batch_size):
        texts = [row[index] if index < len(row) else "" for row in batch]
        keep = [i for i, text in enumerate(texts) if text.strip()]
        proba = predictor.predict_proba([texts[i] for i in keep])
        results = {i: [predictor.labels[int(p.argmax())], f"{p[0]:.6f}", f"{p[1]:.6f}"]
                   for i, p in zip(keep, proba, strict=True)}
        for i, row in enumerate(batch):
            writer.writerow([*row, *results.get(i, ["", "", ""])])
        counts["rows"] += len(batch)
        counts["scored"] += len(keep)
        counts["empty"] += len(batch) - len(keep)
        on_batch(len(batch))
    return counts


def score_csv(predictor: Predictor, source: Path, target: Path, *, text_column: str = "text", header: bool = True,
              encoding: str = "utf-8", batch_size: int = 256, progress: bool = True) -> dict[str, int]:
    """Score every row of ``source`` and write ``target`` (input columns + label + probabilities).

    Args:
        predictor: the model.
        source: input CSV.
        target: output CSV (written as ``<target>.partial``, renamed when complete).
        text_column: header name or 0-based index of the text.
        header: whether the first row is a header.
        encoding: of the input (undecodable bytes become U+FFFD instead of stopping the run).
        batch_size: rows per model call.
        progress: show a progress bar on stderr.

    Returns:
        Counts of ``rows``, ``scored`` and ``empty`` rows.
    """
    partial = target.with_name(target.name + ".partial")
    total = max(_count_lines(source) - int(header), 0)
    try:
        with source.open(encoding=encoding, errors="replace", newline="") as src, \
                partial.open("w", encoding="utf-8", newline="") as dst, \
                tqdm(total=total, unit="tweet", disable=not progress, desc=f"scoring with {predictor.name}") as bar:
            counts = _score_rows(predictor, csv.reader(src), csv.writer(dst), text_column=text_column,
                                 header=header, batch_size=batch_size, on_batch=bar.update)
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
            for text, p in zip(args.texts, predictor.predict_proba(args.texts), strict=True):
                line = {"text": text, "label": predictor.labels[int(p.argmax())],
                        "probabilities": {"negative": round(float(p[0]), 6), "positive": round(float(p[1]), 6)},
                        "model": predictor.name, "version": predictor.version}
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
            return 0
        if args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        counts = score_csv(predictor, args.input, args.output, text_column=args.text_column,
                           header=not args.no_header, encoding=args.encoding, batch_size=args.batch_size,
                           progress=not args.no_progress)
        logger.info("wrote %s: %d rows, %d scored, %d without text", args.output, counts["rows"], counts["scored"],
                    counts["empty"])
        return 0
    except (ExportError, OSError, ValueError, csv.Error) as error:
        logger.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
