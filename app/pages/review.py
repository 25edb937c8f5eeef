"""Review page (maintainer): the tweets users marked as misclassified, their true labels, telemetry, alert."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from time import monotonic

import pandas as pd
import streamlit as st

from app import alerts, charts, services
from app.settings import get_settings, maintainer_secret
from sentiment.exports import LABELS
from sentiment.feedback import FeedbackFilter

UNLOCKED_AT = "maintainer_unlocked_at"  # time.monotonic() of the unlock
ALL = "(all)"
# The filters are bound to the URL (?filter_model=…&label=…&state=…&dates=…&confidence=…); nothing else is kept there.
FILTER_PARAMS = ("filter_model", "label", "state", "dates", "confidence")


REVIEW_COLUMNS = {
    "text": st.column_config.TextColumn("tweet", width="large",
                                        help="Pick the item below the table to read the whole tweet."),
    "predicted_label": st.column_config.TextColumn("predicted", width="small"),
    "true_label": st.column_config.TextColumn("true label", width="small"),
    "confidence": st.column_config.NumberColumn("confidence", format="percent", width="small"),
    "updated_at": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm", width="medium"),
    "model_name": st.column_config.TextColumn("model", width="small"),
    "model_version": st.column_config.TextColumn("version", width="small"),
    "review_state": st.column_config.TextColumn("review", width="small"),
    "review_note": st.column_config.TextColumn("note", width="medium"),
    "telemetry_state": st.column_config.TextColumn("telemetry", width="small"),
    "id": st.column_config.TextColumn("id", width="small"),
}


def _drop_other_query_params() -> None:
    """A shared link carries filters only: anything else (a ``?secret=`` above all) is removed, never read."""
    for name in [n for n in st.query_params if n not in FILTER_PARAMS]:
        del st.query_params[name]


def _lock() -> None:
    st.session_state.pop(UNLOCKED_AT, None)


def _unlock() -> None:
    secret = maintainer_secret()
    if not secret:
        st.warning("This page is disabled: set `MAINTAINER_SECRET` in the environment or in "
                   "`.streamlit/secrets.toml` to enable it.", icon=":material/lock:")
        st.stop()
    with st.form("unlock"):
        attempt = st.text_input("Maintainer secret", type="password", key="secret_attempt")
        submitted = st.form_submit_button("Unlock")
    if submitted:
        result = services.login_guard().check(attempt, secret, client=services.client_ip())
        if result.ok:
            st.session_state[UNLOCKED_AT] = monotonic()
            st.rerun()
        st.error(result.message)
    st.stop()


def _filters(store_models: list[str]) -> FeedbackFilter:
    # Two rows: a date range ("2026/10/26 – 2026/11/25") needs about twice a fifth of the page to show whole.
    cols = st.columns(3)
    model = cols[0].selectbox("Model", [ALL, *store_models], key="filter_model", bind="query-params")
    label = cols[1].selectbox("Predicted label", [ALL, *LABELS], key="label", bind="query-params")
    state = cols[2].selectbox("Review state", [ALL, "new", "reviewed"], key="state", bind="query-params")
    today = datetime.now(UTC).date()
    cols = st.columns(2)
    days = cols[0].date_input("Dates (UTC)", (today - timedelta(days=30), today), key="dates", bind="query-params")
    low, high = cols[1].slider("Confidence", 0.5, 1.0, (0.5, 1.0), 0.05, key="confidence", bind="query-params")
    since = until = None
    if isinstance(days, tuple) and len(days) == 2:
        since = datetime.combine(days[0], time.min, UTC)
        until = datetime.combine(days[1], time.min, UTC) + timedelta(days=1)
    return FeedbackFilter(verdict="down", model_name=None if model == ALL else model,
                          predicted_label=None if label == ALL else label,
                          review_state=None if state == ALL else state, since=since, until=until,
                          min_confidence=low, max_confidence=high)


def _review_form(rows: list[dict]) -> None:
    by_id = {r["id"]: r for r in rows}
    # The value stays the item's id; the label is what the maintainer recognises: the tweet, model and time.
    chosen = st.selectbox("Item to review", list(by_id), key="review_item",
                          format_func=lambda i: charts.review_item_label(by_id[i]))
    row = by_id[chosen]
    st.code(row["text"], language=None, wrap_lines=True)
    # Keyed by item: a widget with a fixed key keeps its value and ignores a new default, so the form would
    # show (and save) the previous item's label and note on the next one.
    with st.form(f"review_{chosen}"):
        true_label = st.radio("True label", LABELS, index=LABELS.index(row["true_label"]), horizontal=True,
                              key=f"review_label_{chosen}")
        note = st.text_input("Note", value=row["review_note"] or "", key=f"review_note_{chosen}")
        reviewed = st.checkbox("Reviewed", value=True, key=f"review_done_{chosen}")
        if st.form_submit_button("Save review"):
            services.feedback_store().review(chosen, true_label=true_label, note=note, reviewed=reviewed)
            st.toast("Review saved.", icon=":material/check:")
            st.rerun()


_drop_other_query_params()
ttl_min = get_settings().maintainer_session_ttl_min
unlocked_at = st.session_state.get(UNLOCKED_AT)
expired = unlocked_at is not None and monotonic() - unlocked_at > ttl_min * 60
if unlocked_at is None or expired:
    _lock()
    st.title("Review feedback")
    if expired:
        st.info(f"The page locked itself {ttl_min:g} minutes after it was unlocked (`MAINTAINER_SESSION_TTL_MIN`): "
                "enter the secret again.", icon=":material/lock_clock:")
    _unlock()

store = services.feedback_store()
flusher = services.telemetry_flusher()
head = st.columns([6, 1], vertical_alignment="bottom")
head[0].title("Review feedback")
head[1].button("Lock", key="lock_review", icon=":material/lock:", on_click=_lock,
               help=f"Lock this page now (it locks itself {ttl_min:g} minutes after it was unlocked).")
state = alerts.evaluate(store, services.alert_rule())
if state.firing:
    st.error(state.message, icon=":material/notifications_active:")
else:
    st.success(state.message, icon=":material/notifications:")

verdicts = store.verdict_history()
if verdicts:
    ageing, _ = charts.feedback_ageing(verdicts, get_settings().exports_dir, state.rule)
    st.plotly_chart(ageing, key="ageing_chart")

counts = store.telemetry_counts()
cols = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
cols[0].metric("Telemetry pending", counts["pending"])
cols[1].metric("Failed, retrying", counts["failed"])
cols[2].metric("Sent", counts["sent"])
if flusher.enabled:
    if cols[3].button("Flush now", key="flush_now"):
        report = flusher.flush_once()
        st.toast(f"Sent {report.sent}, not accepted {report.failed}.")
        st.rerun()
else:  # full width: in a column the setting's name broke in the middle
    st.info("Telemetry is off: set `APPLICATIONINSIGHTS_CONNECTION_STRING` to send feedback to Application "
            "Insights. Rows stay pending meanwhile.", icon=":material/cloud_off:")

rows = store.list(_filters(store.model_names()))
st.subheader(f"Misclassified tweets ({len(rows)})")
if rows:
    # The tweet and both labels first, so they show without scrolling; the rest after.
    table = pd.DataFrame(rows)[list(REVIEW_COLUMNS)]
    table["updated_at"] = pd.to_datetime(table["updated_at"], utc=True)
    st.dataframe(table, hide_index=True, key="review_table", column_config=REVIEW_COLUMNS)
    _review_form(rows)
    st.plotly_chart(charts.misclassified_timeline(table["updated_at"], state.rule.threshold,
                                                  int(state.rule.window.total_seconds() // 60)), key="timeline")
else:
    st.info("No thumbs-down feedback matches these filters.")

st.download_button("Export reviewed items (Sentiment140 CSV for retraining)", store.export_reviewed_csv(),
                   file_name="feedback-reviewed.csv", mime="text/csv", key="export_reviewed")
