"""Score a corpus on Apache Spark: ``make score-spark INPUT=… OUTPUT=… [MODEL=…]``, or ``spark-submit`` on a cluster.

Examples::

    python -m batch.spark tweets.csv scored.parquet                       # a `text` column, UTF-8; local[*]
    python -m batch.spark training.1600000.processed.noemoticon.csv scored.parquet --model tfidf-lr
    spark-submit --py-files code.zip --archives exports.tar.gz#exports batch/spark.py \\
        s3a://bucket/tweets/ s3a://bucket/scored/ --exports-dir exports --model minilm

Input: CSV with a header and a ``text`` column (``--text-column``), Sentiment140's six header-less columns in
latin-1 (recognised by their count, read as ``target, ids, date, flag, user, text``), or Parquet. Output: a
Parquet dataset with every input column plus ``label``, ``confidence``, ``p_positive``, ``model``, ``version``
and ``reason`` (why a row has no label: ``missing``, ``empty``, ``too_long``, or ``malformed``: a CSV row with more
or fewer fields than the header, or than Sentiment140's six). An input column named like an output column is kept as
``input_<name>``.

The model is the API's own ONNX predictor (``sentiment.predictor.load_predictor``), checked on the driver, then loaded
once per Python worker (workers are reused across tasks) and called on the Arrow batches of ``mapInPandas``,
at most ``--chunk-rows`` texts a call. Without ``spark-submit`` the job runs on a local Spark (``local[*]``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.scoring import OUTPUT_COLUMNS, default_chunk_rows, score_texts
from sentiment.exports import ExportError
from sentiment.predictor import Predictor, load_predictor
from sentiment.registry import open_model
from sentiment.scoring import bom_encoding
from sentiment.settings import EngineSettings

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

SENTIMENT140_POLARITIES = ("0", "2", "4")  # the first field of every Sentiment140 row
SENTIMENT140_COLUMNS = ("target", "ids", "date", "flag", "user", "text")
FORMATS = ("auto", "csv", "sentiment140", "parquet")
# Spark's columnNameOfCorruptRecord: the raw line of a CSV row with a wrong number of fields; read, never written.
MALFORMED_COLUMN = "_malformed_record"
_OUTPUT_DDL = "label string, confidence double, p_positive double, model string, version string, reason string"
# Spark's CSV reader takes Java charset names: it refuses "latin1".
_ENCODINGS = {"latin1": "ISO-8859-1", "latin-1": "ISO-8859-1", "utf8": "UTF-8"}
# One predictor per Python worker: workers are reused across tasks (spark.python.worker.reuse, on by default).
_PREDICTORS: dict[tuple[str, str, int], Predictor] = {}


def worker_predictor(folder: str, variant: str, threads: int) -> Predictor:
    """The predictor of this Python worker, loaded on its first batch and kept for the next tasks."""
    key = (folder, variant, threads)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = load_predictor(locate_export(folder), variant, threads)
    return _PREDICTORS[key]


def locate_export(folder: str) -> Path:
    """The export on this node: the path as given, else under the files that ``--archives`` unpacked here."""
    path = Path(folder)
    if path.is_dir():
        return path
    if not path.is_absolute():
        from pyspark import SparkFiles

        shipped = Path(SparkFiles.getRootDirectory()) / path
        if shipped.is_dir():
            return shipped
    raise ExportError(f"{folder} is not on this node: ship the exports with spark-submit "
                      "--archives exports.tar.gz#exports, or give a path that every node can read")


def spark_session(master: str | None = None, conf: Sequence[tuple[str, str]] = ()) -> SparkSession:
    """The job's session: the one spark-submit configured, else a local Spark (``master`` or ``local[*]``)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("tweet-sentiment-score")
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # set by spark-submit for a Python driver
    if master or not under_submit:
        master = master or "local[*]"
        builder = builder.master(master)
        # Workers run PYSPARK_PYTHON, by default `python3` on PATH, which lacks this environment's packages; a
        # session built in-process reads only the variable (spark.pyspark.python is spark-submit's).
        if master.startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
            os.environ["PYSPARK_PYTHON"] = sys.executable
    for key, value in conf:
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _refuse_wide_encodings(path: str) -> None:
    """Refuse a local CSV that starts with a UTF-16 or UTF-32 byte-order mark, which Spark's reader cannot split.

    Read as latin-1, such a file's mark and NULs became a "tweet"; the fix is a conversion, named in the message.
    """
    files = [Path(path)] if Path(path).is_file() else sorted(Path(path).glob("*.csv")) if Path(path).is_dir() else []
    for file in files:
        with file.open("rb") as raw:
            announced = bom_encoding(raw.read(4))
        if announced in ("utf-16", "utf-32"):
            raise ValueError(f"{file} is {announced.upper()} text (byte-order mark): Spark reads CSV in UTF-8 or "
                             f"latin-1; convert it first: iconv -f {announced.upper()} -t UTF-8 {file} > converted.csv")


@dataclass(frozen=True)
class Input:
    """What :func:`read_input` read."""

    frame: DataFrame
    text_column: str
    # CSV only: the frame's column holding the raw line of a row whose field count differs from the header's (or
    # from Sentiment140's six), null for every other row. Spark keeps the first fields of such a row and drops or
    # nulls the rest, so its "text" may be another field or a piece of the tweet: the row is flagged, not scored.
    malformed_column: str | None = None


def _read_csv(reader: Any, path: str, names: Sequence[str]) -> tuple[DataFrame, str]:
    """Read ``path`` as string columns ``names``, with Spark's corrupt-record column flagging the rows whose number
    of fields is not ``len(names)``; returns the frame and that column's name (one no input column has)."""
    from pyspark.sql.types import StringType, StructField, StructType

    malformed = MALFORMED_COLUMN
    while malformed.lower() in {name.lower() for name in names}:  # Spark matches names regardless of case
        malformed += "_"
    schema = StructType([StructField(name, StringType()) for name in [*names, malformed]])
    return reader.options(columnNameOfCorruptRecord=malformed).schema(schema).csv(path), malformed


def read_input(spark: SparkSession, path: str, *, fmt: str = "auto", text_column: str = "text",
               encoding: str | None = None, multiline: bool = False) -> Input:
    """Read ``path`` as CSV, Sentiment140's six columns or Parquet.

    A CSV row with more or fewer fields than the header (Sentiment140: than six) is kept, its raw line in
    :attr:`Input.malformed_column`.

    Raises:
        ValueError: unknown format, no string column ``text_column``, or a UTF-16/UTF-32 file.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {FORMATS}")
    detect = fmt == "auto"
    if detect:
        fmt = "parquet" if path.rstrip("/").endswith(".parquet") else "csv"
    malformed = None
    if fmt == "parquet":
        frame = spark.read.parquet(path)
    else:
        _refuse_wide_encodings(path)
        # RFC 4180 quoting (a quote inside a field is doubled). PERMISSIVE: a row with more or fewer fields than
        # the schema is kept, flagged in the corrupt-record column (Spark 3+ counts the fields; the option table
        # of the docs still says otherwise), never a failure.
        reader = spark.read.options(quote='"', escape='"', multiLine=multiline, mode="PERMISSIVE")
        if fmt == "csv":
            charset = _ENCODINGS.get((encoding or "utf-8").lower(), encoding or "UTF-8")
            header = reader.options(header=True, encoding=charset).csv(path).columns  # reads the first line only
            # Sentiment140's files have no header: their first row, read as one, starts with a polarity code. A
            # six-column file whose first row is a real header is a CSV without the text column, not Sentiment140.
            if (detect and text_column not in header and len(header) == len(SENTIMENT140_COLUMNS)
                    and header[0].strip() in SENTIMENT140_POLARITIES):
                fmt = "sentiment140"
            else:  # the header's names (Spark's: deduplicated, `_c<i>` for an empty one), its line skipped
                frame, malformed = _read_csv(reader.options(header=True, encoding=charset), path, header)
        if fmt == "sentiment140":
            charset = _ENCODINGS.get((encoding or "latin-1").lower(), encoding)
            frame, malformed = _read_csv(reader.options(header=False, encoding=charset), path, SENTIMENT140_COLUMNS)
            text_column = "text"
    columns = [name for name in frame.columns if name != malformed]
    if text_column not in columns:
        raise ValueError(f"{path}: no column {text_column!r} among {columns}; set --text-column "
                         "(Sentiment140's header-less six columns are recognised by themselves)")
    kind = dict(frame.dtypes)[text_column]
    if kind != "string":
        raise ValueError(f"{path}: column {text_column!r} holds {kind}, not text")
    return Input(frame, text_column, malformed)


def _scorer(folder: str, variant: str, threads: int, text_column: str, max_chars: int, chunk_rows: int,
            malformed_column: str | None) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The function ``mapInPandas`` ships to the workers (pickled with these arguments, not the model)."""

    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        predictor = worker_predictor(folder, variant, threads)
        for frame in frames:
            # The raw line flags the row and goes no further: the output keeps the input's columns only.
            malformed = frame.pop(malformed_column).notna() if malformed_column else None
            scored = score_texts(frame[text_column], predictor, max_chars=max_chars, chunk_rows=chunk_rows,
                                 malformed=malformed)
            yield pd.concat([frame, scored], axis=1)

    return score


def choose_model(model: str | None = None, exports_dir: str | Path | None = None) -> Predictor:
    """The export to score with, checked (metadata and checksums) on the driver before any executor starts.

    Args:
        model: export name (default: the API's default model).
        exports_dir: folder of exports (default: ``EXPORTS_DIR``). A relative path stays relative: each node
            resolves it in its own working directory, where ``--archives`` unpacks the exports.

    Raises:
        ExportError: no such model, or its files do not match their checksums.
    """
    settings = EngineSettings()
    return open_model(Path(exports_dir or settings.exports_dir), model, settings.default_model)


def score(spark: SparkSession, source: str, target: str, predictor: Predictor, *, fmt: str = "auto",
          text_column: str = "text",
          encoding: str | None = None, multiline: bool = False, max_chars: int | None = None,
          chunk_rows: int | None = None, threads: int = 1, overwrite: bool = False) -> dict[str, Any]:
    """Score ``source`` into the Parquet dataset ``target`` and count the rows by outcome.

    Args:
        spark: the session.
        source, target: input file or folder (CSV or Parquet), output folder; any URI Spark reads.
        predictor: the model, from :func:`choose_model`; the workers load their own copy from its folder.
        fmt, text_column, encoding, multiline: see :func:`read_input`.
        max_chars: longest text scored (default: the API's ``MAX_TEXT_CHARS``).
        chunk_rows: most texts in one predictor call (default: 1 for int8 graphs, else 256; see
            :func:`batch.scoring.default_chunk_rows`).
        threads: ONNX Runtime threads per Python worker (a worker per executor core: keep cores x threads
            within the node's cores).
        overwrite: replace ``target`` when it exists (otherwise the job refuses to start).

    Returns:
        ``model``, ``version``, ``rows``, ``scored`` and one count per reason of the rows left without a label.

    Raises:
        ValueError: a bad argument or input layout.
        pyspark.errors.PySparkException: Spark's own errors (a missing input, an existing output, ...).
    """
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    chunk_rows = chunk_rows or default_chunk_rows(predictor)
    read = read_input(spark, source, fmt=fmt, text_column=text_column, encoding=encoding, multiline=multiline)
    frame, text_column, malformed = read.frame, read.text_column, read.malformed_column
    for name in OUTPUT_COLUMNS:
        if name in frame.columns:
            renamed = f"input_{name}"
            while renamed in frame.columns:  # an input may already hold input_label
                renamed = f"input_{renamed}"
            frame = frame.withColumnRenamed(name, renamed)
            text_column = renamed if text_column == name else text_column
    quoted = [name for name in frame.columns if "`" in name]
    if quoted:  # Spark cannot carry such a name through mapInPandas: say so before any work starts
        raise ValueError(f"{source}: column names with a backtick {quoted} cannot be scored by Spark; rename them")
    # mapInPandas takes every column, the corrupt-record one included: Spark then parses whole rows (under column
    # pruning it would count only the fields asked for) and flags each row whose count is wrong.
    schema = ", ".join([f"`{name}` {kind}" for name, kind in frame.dtypes if name != malformed] + [_OUTPUT_DDL])
    function = _scorer(str(predictor.folder), predictor.variant, threads, text_column,
                       max_chars or EngineSettings().max_text_chars, chunk_rows, malformed)
    logger.info("scoring %s with %s %s (%s, %d per call) into %s", source, predictor.name, predictor.version,
                predictor.variant, chunk_rows, target)
    _write(spark, frame.mapInPandas(function, schema), target, overwrite)
    counts = {row["reason"]: row["count"] for row in spark.read.parquet(target).groupBy("reason").count().collect()}
    summary = {"model": predictor.name, "version": predictor.version, "rows": sum(counts.values()),
               "scored": counts.pop(None, 0), **{reason: counts[reason] for reason in sorted(counts)}}
    logger.info("wrote %s: %s", target, summary)
    return summary


def _write(spark: SparkSession, frame: DataFrame, target: str, overwrite: bool) -> None:
    """Write the Parquet dataset; a failed job removes the folder it created (Spark leaves it, and a rerun
    would then refuse it as existing), never one that was there before."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(target)
    filesystem = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    existed = filesystem.exists(path)
    try:
        frame.write.mode("overwrite" if overwrite else "errorifexists").parquet(target)
    except BaseException:
        if not existed and filesystem.exists(path):
            filesystem.delete(path, True)
        raise


def _conf(value: str) -> tuple[str, str]:
    key, sep, setting = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, setting


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m batch.spark", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="CSV or Parquet file or folder (any path or URI Spark reads)")
    parser.add_argument("output", help="Parquet dataset to write (a folder)")
    parser.add_argument("--model", help="export name (default: the API's default model)")
    parser.add_argument("--exports-dir", help="folder of exports (default: EXPORTS_DIR or exports/)")
    parser.add_argument("--format", default="auto", choices=FORMATS, dest="fmt")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--encoding", help="CSV encoding (default: UTF-8; Sentiment140's six columns: latin-1)")
    parser.add_argument("--multiline", action="store_true", help="quoted CSV fields span lines (one task per file)")
    parser.add_argument("--max-chars", type=int, help="longest text scored (default: MAX_TEXT_CHARS)")
    parser.add_argument("--chunk-rows", type=int, help="most texts per predictor call (default: 1 for int8, else 256)")
    parser.add_argument("--onnx-threads", type=int, default=1, help="ONNX Runtime threads per Python worker")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    parser.add_argument("--conf", type=_conf, action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting, repeatable (spark.driver.memory=4g)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT when it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 done, 1 model, input or Spark problem)."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    args = _parser().parse_args(argv)
    # Spark's py4j logs chatter on the root logger: warnings only there, this package at LOG_LEVEL.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("batch").setLevel(EngineSettings().log_level)
    try:
        predictor = choose_model(args.model, args.exports_dir)
    except ExportError as error:
        logger.error("%s", error)
        return 1
    try:
        spark = spark_session(args.master, args.conf)
    except PySparkException as error:
        logger.error("Spark could not start (%s): it needs Java 17 or later on PATH or in JAVA_HOME "
                     "(`make install-java` installs Debian's openjdk-17-jre-headless)", error)
        return 1
    try:
        summary = score(spark, args.input, args.output, predictor, fmt=args.fmt, text_column=args.text_column,
                        encoding=args.encoding, multiline=args.multiline, max_chars=args.max_chars,
                        chunk_rows=args.chunk_rows, threads=args.onnx_threads, overwrite=args.overwrite)
        sys.stdout.write(json.dumps(summary) + "\n")
        return 0
    except (ExportError, ValueError, PySparkException) as error:
        logger.error("%s", error)
        return 1
    except Py4JError as error:  # a failed job: the JVM's own message, without py4j's Python frames
        logger.error("the Spark job failed: %s", str(error).strip().splitlines()[-1][:2000])
        return 1
    finally:
        spark.stop()


if __name__ == "__main__":
    # Run as `batch.spark`, not `__main__`: cloudpickle ships __main__'s functions by value, with a fresh
    # predictor cache each, so every task would load the model again.
    from batch.spark import main as module_main

    sys.exit(module_main())
