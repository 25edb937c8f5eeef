"""Predict page: one tweet (every model side by side on demand), thumbs feedback, and CSV batches."""

from __future__ import annotations

import html

import streamlit as st

from app import batch_charts, charts, services, ui
from app.inference import (
    EXAMPLE_TWEETS,
    BusyError,
    CsvError,
    NoTextColumnError,
    Prediction,
    QueuedModel,
    TextColumn,
    char_count,
    explain_prediction,
    predict,
    predict_all,
    read_tweets_csv,
    score_frame,
    scored_csv,
    validate_tweet,
)
from app.settings import get_settings
from sentiment.explain import Explanation

VERDICT_BY_INDEX = {0: "down", 1: "up"}


SHARED_TEXT = "text"  # ?text=… pre-fills the tweet (never written from what is typed, never predicted by itself)


def _use_example() -> None:
    choice = st.session_state.get("example")
    if choice:
        st.session_state["tweet_text"] = choice
        _text_edited()


def _prefill_shared_text() -> None:
    """A shared link's ``?text=`` becomes the text area's first value; the user still presses Predict."""
    shared = st.query_params.get(SHARED_TEXT)
    if shared and "tweet_text" not in st.session_state:
        st.session_state["tweet_text"] = shared


def _text_edited() -> None:
    """The text no longer is the shared one: drop ``?text=`` so the address bar does not show another tweet."""
    st.query_params.pop(SHARED_TEXT, None)


def _save_feedback(prediction: Prediction, key: str) -> None:
    """``st.feedback``'s callback: write (or update) the verdict at once and confirm with a toast."""
    verdict = VERDICT_BY_INDEX.get(st.session_state.get(key, -1))
    if verdict is None:
        return  # the thumb was un-clicked: the last verdict stays recorded
    try:
        services.record_feedback(prediction, verdict, client=services.client_ip())
    except services.FeedbackLimited as limited:
        st.toast(str(limited), icon=":material/hourglass_top:")
        return
    st.toast("Thanks! Your feedback was saved." if verdict == "up" else
             "Thanks! Saved as misclassified: a maintainer will review it.", icon=":material/check:")


def _show_prediction(prediction: Prediction) -> None:
    left, right = st.columns([1, 2])
    with left:
        st.metric("Sentiment", prediction.label.capitalize(), f"{prediction.confidence:.1%} confidence",
                  delta_color="green" if prediction.label == "positive" else "red", delta_arrow="off")
        st.caption(f"{prediction.model_name} v{prediction.model_version} · {prediction.latency_ms:.1f} ms")
    with right:
        st.plotly_chart(charts.probability_bar(prediction.probabilities), key=f"proba_{prediction.id}")
    st.caption("Tweet scored:")
    st.text(prediction.text)
    st.write("Was this prediction right?")
    key = f"feedback_{prediction.id}"
    st.feedback("thumbs", key=key, on_change=_save_feedback, args=(prediction, key))


def _show_explanation(prediction: Prediction, explanation: Explanation) -> None:
    st.subheader("Why?")
    st.caption(f"Green words pushed {prediction.model_name} towards positive, red words towards negative; the stronger "
               "the colour, the larger the change when the word is left out (hover a word for the figure).")
    st.markdown(charts.highlighted_words(prediction.text, explanation), unsafe_allow_html=True)
    if explanation.truncated:
        st.caption(f"The first {len(explanation.words)} of {explanation.words_total} words are explained.")
    st.plotly_chart(charts.explanation_bar(explanation), key=f"why_{prediction.id}")


def _single_tab(registry_names: list[str], default: str, champion: str, max_chars: int) -> None:
    st.selectbox("Example tweets (written by us)", EXAMPLE_TWEETS, index=None, key="example",
                 placeholder="Pick an example…", on_change=_use_example)
    # No max_chars: a pasted long text would be cut silently; it is counted and refused with a message.
    _prefill_shared_text()
    text = st.text_area("Tweet", key="tweet_text", height=110, on_change=_text_edited,
                        placeholder="Type or paste a tweet (Ctrl+Enter to apply)")
    st.caption(char_count(text, max_chars), help="Updated when you press Ctrl+Enter or leave the text area.")
    model_name = st.selectbox("Model", registry_names, index=registry_names.index(default), key="model",
                              format_func=lambda n: f"{n} (champion)" if n == champion else n, bind="query-params")
    compare_all = st.toggle("Show every model's verdict", key="compare_all")
    why = st.toggle("Why? Show the words behind the label", key="explain",
                    help="Scores the tweet once more without each word (in the same model call) and highlights "
                         "the words that pushed it towards each label.")
    if st.button("Predict", type="primary", key="predict"):
        error = validate_tweet(text, max_chars)
        if error:
            st.session_state.pop("prediction", None)
            st.warning(error, icon=":material/edit_note:")
        else:
            # Through the API's queue: shared batches, the same limits, deadline and metrics as API clients.
            registry = services.ready_registry()
            try:
                model = QueuedModel(registry, registry.get(model_name))
                explanation = None
                if why:
                    prediction, explanation = explain_prediction(model, text, registry.settings.explain_max_words)
                else:
                    prediction = predict(model, text)
                verdicts = (predict_all([QueuedModel(registry, m) for m in registry.models()], text)
                            if compare_all else None)
            except BusyError as error:
                st.session_state.pop("prediction", None)
                st.session_state.pop("all_models", None)
                st.warning(str(error), icon=":material/hourglass_top:")
            else:
                st.session_state["prediction"] = prediction
                st.session_state["explanation"] = explanation
                st.session_state["all_models"] = verdicts
    prediction: Prediction | None = st.session_state.get("prediction")
    if prediction is None:
        return
    _show_prediction(prediction)
    explanation = st.session_state.get("explanation")
    if explanation is not None:
        _show_explanation(prediction, explanation)
    verdicts = st.session_state.get("all_models")
    if verdicts is not None:
        st.subheader("All models")
        # Percentages with one decimal, all alike ("percent" alone showed 97.4% beside 95.98%).
        shown = verdicts.assign(confidence=verdicts["confidence"] * 100, p_positive=verdicts["p_positive"] * 100)
        st.dataframe(shown, hide_index=True, column_config={
            "confidence": st.column_config.NumberColumn("confidence", format="%.1f%%"),
            "p_positive": st.column_config.NumberColumn("P(positive)", format="%.1f%%"),
            "latency_ms": st.column_config.NumberColumn("latency (ms)", format="%.1f")})
        st.plotly_chart(charts.all_models_bar(verdicts), key="all_models_chart")


def _batch_tab(registry_names: list[str], default: str, champion: str) -> None:
    settings = get_settings()
    st.write(f"Upload a CSV with a `text` column (or one tweet per line, or Sentiment140's six columns, or any table: "
             f"you then say which column holds the tweets); up to {settings.batch_max_rows:,} rows.")
    upload = st.file_uploader("CSV of tweets", type=["csv", "txt"], key="batch_file", on_change=_new_upload)
    model_name = st.selectbox("Model for the batch", registry_names, index=registry_names.index(default),
                              format_func=lambda n: f"{n} (champion)" if n == champion else n, key="batch_model")
    if upload is not None and st.button("Score the file", key="score_batch"):
        _score_upload(upload, model_name, None)
    first_row = st.session_state.get("batch_first_row")
    if upload is not None and first_row is not None:
        st.info("No column of this file is named text, tweet, content or message: which one holds the tweets?",
                icon=":material/table_view:")
        index = st.selectbox("Column with the tweets", range(len(first_row)), key="batch_text_column",
                             format_func=lambda i: f"column {i + 1}: {first_row[i][:50]}")
        header = st.checkbox("The first row is a header (column names, not a tweet)", value=True, key="batch_header")
        if st.button("Score with this column", key="score_batch_column"):
            _score_upload(upload, model_name, TextColumn(index, header))
    result = st.session_state.get("batch_result")
    if result is not None:
        _show_batch_result(result)


def _new_upload() -> None:
    for key in ("batch_first_row", "batch_result", "batch_name"):
        st.session_state.pop(key, None)


def _score_upload(upload, model_name: str, column: TextColumn | None) -> None:
    """Read the upload (with the user's column, if chosen), score it through the model's queue, keep the result."""
    settings = get_settings()
    try:
        upload.seek(0)
        frame = read_tweets_csv(upload, settings.batch_max_rows, column)  # streamed: stops past the row limit
    except NoTextColumnError as error:
        st.session_state["batch_first_row"] = error.first_row
        st.session_state.pop("batch_result", None)
        return
    except CsvError as error:
        st.error(str(error))
        return
    st.session_state.pop("batch_first_row", None)
    bar = st.progress(0.0, text="Scoring…")
    registry = services.ready_registry()
    try:
        # Chunks of one model call each, one after another: API requests are served between them.
        result = score_frame(QueuedModel(registry, registry.get(model_name)), frame,
                             max_chars=registry.settings.max_text_chars,
                             batch_size=registry.settings.max_batch_size,
                             progress=lambda share, line: bar.progress(share, text=line))
    except BusyError as error:
        bar.empty()
        st.session_state.pop("batch_result", None)
        st.session_state.pop("batch_name", None)
        st.error(str(error), icon=":material/hourglass_top:")
        return
    st.session_state["batch_result"] = result
    st.session_state["batch_name"] = upload.name


def _show_batch_result(result) -> None:
    counts = result["label"].fillna(batch_charts.NOT_SCORED).value_counts()
    st.write(" · ".join(f"{label}: {count:,}" for label, count in counts.items()))
    left, right = st.columns(2)
    with left:
        st.plotly_chart(batch_charts.label_shares(result), key="batch_shares")
    with right:
        st.plotly_chart(batch_charts.confidence_histogram(result), key="batch_confidence")
    labels = st.multiselect("Show labels", list(counts.index), default=list(counts.index), key="batch_labels")
    least = st.slider("Least confidence", 0.5, 1.0, 0.5, 0.05, format="%.2f", key="batch_min_confidence")
    rows = batch_charts.filtered(result, labels, least)
    st.caption(f"{len(rows):,} of {len(result):,} rows shown (the table shows the first 200).")
    # Tweets come HTML-escaped from Twitter (Sentiment140's &quot;, &amp;): shown as a reader sees them; the
    # download keeps the file's own text.
    preview = rows.head(200).assign(text=lambda f: f["text"].map(
        lambda t: html.unescape(t) if isinstance(t, str) else t))
    st.dataframe(preview, hide_index=True, column_config={
        "text": st.column_config.TextColumn("text", width="large"),
        "confidence": st.column_config.NumberColumn("confidence", format="%.3f"),
        "p_positive": st.column_config.NumberColumn("P(positive)", format="%.3f")})
    name = st.session_state.get("batch_name", "tweets.csv").rsplit(".", 1)[0]
    st.download_button("Download the scored CSV", scored_csv(result),
                       file_name=f"{name}-scored.csv", mime="text/csv", key="download_batch")
    if len(rows) < len(result):
        st.download_button("Download the rows shown", scored_csv(rows),
                           file_name=f"{name}-scored-filtered.csv", mime="text/csv", key="download_batch_filtered")


st.title("Tweet sentiment")
registry = ui.require_models()
names = [m.name for m in registry.models()]
champion = services.champion_name(registry)
single, batch = st.tabs(["Single tweet", "Batch (CSV)"])
with single:
    _single_tab(names, registry.default_name, champion, registry.settings.max_text_chars)
with batch:
    _batch_tab(names, registry.default_name, champion)
