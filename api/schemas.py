"""Request and response schemas of the HTTP API (v1 and the original project's routes).

Texts are checked here for what does not depend on settings: type (strings only, no coercion), a visible
character at least, lone surrogates. The configurable length bound (``MAX_TEXT_CHARS``) is checked by
:func:`api.deps.check_text_lengths` and advertised in the OpenAPI schema by :func:`api.main.create_app`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from sentiment.scoring import EMPTY, check_text
from sentiment.settings import MAX_BATCH_TEXTS

# Marks the string fields whose maxLength create_app fills in from MAX_TEXT_CHARS.
TEXT_FIELD_MARK = "x-tweet-text"
# After JSON decoding, a surrogate code point can only be a lone one ("\ud83d" without its pair).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(value: object) -> object:
    """Replace lone surrogates by U+FFFD, as a UTF-8 decoder does with broken bytes.

    They cannot be encoded as UTF-8, so pydantic, the tokenizer and the JSON response would all fail on them;
    this runs before pydantic's own string check.
    """
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


def _require_visible(value: str) -> str:
    # The engine's one text check; the length bound depends on settings and is checked in api.deps.
    if check_text(value, max_chars=len(value)) == EMPTY:
        raise ValueError("text must contain at least one visible character (not only spaces, control or "
                         "formatting characters)")
    return value


TweetText = Annotated[
    str,
    Field(strict=True, min_length=1, json_schema_extra={TEXT_FIELD_MARK: True},
          description="The tweet. At most MAX_TEXT_CHARS characters (default 1000); not empty or only spaces."),
    BeforeValidator(_replace_surrogates),
    AfterValidator(_require_visible),
]
ModelName = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
          description="A model listed by GET /v1/models; the default model when omitted."),
]
Label = Literal["negative", "positive"]

_EXAMPLE_PROBABILITIES = {"negative": 0.0213, "positive": 0.9787}
_EXAMPLE_PREDICTION = {"label": "positive", "confidence": 0.9787, "probabilities": _EXAMPLE_PROBABILITIES,
                       "model": "minilm", "version": "1"}


class PredictRequest(BaseModel):
    """One tweet to classify."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "My flight was on time and the crew was lovely!"},
                     {"text": "Lost my luggage again. Never flying with them.", "model": "tfidf-lr"}]})

    text: TweetText
    model: ModelName | None = None
    explain: bool = Field(default=False, description=(
        "Also say why: each word's contribution to P(positive), by scoring the tweet once more without each word "
        "(at most EXPLAIN_MAX_WORDS words, in the same model call; they count against the model's queue and "
        "deadline)."))


class BatchPredictRequest(BaseModel):
    """Up to 256 tweets, classified by one model."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"texts": ["Great service today", "Two hours on the tarmac, no water"]}]})

    texts: list[TweetText] = Field(min_length=1, max_length=MAX_BATCH_TEXTS, description="1 to 256 tweets.")
    model: ModelName | None = None


class Probabilities(BaseModel):
    """Probability of each class; they sum to 1."""

    negative: float = Field(ge=0, le=1)
    positive: float = Field(ge=0, le=1)


class Prediction(BaseModel):
    """The label of one tweet, with the probabilities and the model that gave them."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_PREDICTION]})

    label: Label
    confidence: float = Field(ge=0, le=1, description="Probability of the predicted label.")
    probabilities: Probabilities
    model: str
    version: str


class WordContribution(BaseModel):
    """One word of the tweet and how it moved the answer."""

    word: str
    start: int = Field(description="Offset of the word's first character in the tweet.")
    end: int = Field(description="Offset just past its last character.")
    contribution: float = Field(description=(
        "P(positive) of the tweet minus P(positive) without this word: above 0 it pushed towards positive, below 0 "
        "towards negative."))


class Explanation(BaseModel):
    """Why the label: the words' contributions, in tweet order."""

    method: Literal["occlusion"]
    words: list[WordContribution]
    words_total: int = Field(description="Words in the tweet; only the first EXPLAIN_MAX_WORDS are explained.")
    truncated: bool


class ExplainedPrediction(Prediction):
    """A prediction, with its explanation when the request asked for one (``"explain": true``)."""

    explanation: Explanation | None = None


class BatchPredictResponse(BaseModel):
    """One prediction per text, in the order of the request."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "minilm", "version": "1", "count": 1, "predictions": [_EXAMPLE_PREDICTION]}]})

    model: str
    version: str
    count: int
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    """A served model, as described by its export's metadata."""

    name: str
    display_name: str
    family: str
    version: str
    variant: str
    default: bool
    aliases: list[str]
    preprocessing_version: str
    max_length: int | None = None
    created_at: str | None = None
    metrics: dict[str, dict[str, float | None]] = Field(description="Evaluation set → metric → value.")
    mlflow: dict[str, str | int | None] | None = None


class ModelsResponse(BaseModel):
    """Every served model and the default one."""

    default: str
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"]


class ReloadResult(BaseModel):
    """One check of EXPORTS_DIR for a new or changed export."""

    outcome: Literal["swapped", "unchanged", "refused", "not_ready"]
    detail: str | None = Field(default=None, description="Why the change was refused (the served models stay).")
    models: dict[str, str] = Field(default={}, description="Model → version served after the check.")
    default: str | None = None
    load_seconds: float | None = Field(default=None, description="Loading, verifying and warming up the change.")
    swap_seconds: float | None = Field(default=None, description="Replacing the served models (one assignment).")
    predictions_during_load: int | None = Field(default=None, description="Texts classified meanwhile.")
    at: str


class ReloadState(BaseModel):
    """The live-reload watcher: when it last looked, and what it last swapped in or refused."""

    interval_s: float = Field(description="RELOAD_INTERVAL_S; 0: no watcher, only POST /v1/admin/reload.")
    source: Literal["manifest", "folders"] | None = Field(
        default=None, description="manifest.json, or every export folder when there is none.")
    last_check_at: str | None = None
    last_error: str | None = Field(default=None, description="Why the latest change was refused; null once a "
                                   "later change is served or the broken one is withdrawn.")
    last_swap: ReloadResult | None = None


class Readiness(BaseModel):
    """Whether the models are loaded and warmed up (200) or not yet, or failed (503)."""

    status: Literal["ready", "not_started", "loading", "failed"]
    models: list[str] = []
    versions: dict[str, str] = Field(default={}, description="Model → version being served.")
    default: str | None = None
    champion: str | None = None
    detail: str | None = None
    skipped: dict[str, str] = Field(default={}, description="Export folders not served, with the reason.")
    reload: ReloadState | None = None


class ErrorResponse(BaseModel):
    """A client or service error."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "unknown model 'bert'"}]})

    detail: str


# The original project's routes (see /work/shared/ORIGINAL.md): its consumers must not notice the switch.
class CompatPredictRequest(BaseModel):
    """The original ``/predict`` body."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"text": "I love this airline!"}]})

    text: TweetText


class CompatBatchRequest(BaseModel):
    """The original ``/predict_batch`` body."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"texts": ["I love this airline!", "Delayed again."]}]})

    # The original answered [] to an empty list; so do we.
    texts: list[TweetText] = Field(max_length=MAX_BATCH_TEXTS)


class CompatPrediction(BaseModel):
    """The original answer: Sentiment140 code 0 or 4, the top probability and a French label."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tweet": "I love this airline!", "prediction": 4, "confidence": 0.97, "sentiment": "Tweet positif"}]})

    tweet: str
    prediction: Literal[0, 4]
    confidence: float
    sentiment: Literal["Tweet négatif", "Tweet positif"]


class CompatMessage(BaseModel):
    message: str
