"""The maintainer's review form: each item shows, and saves, its own stored label and note."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Radio, TextInput

from app.settings import get_settings
from sentiment.feedback import FeedbackStore

MAIN = Path(__file__).resolve().parents[2] / "app" / "entry" / "main.py"
SECRET = "a-maintainer-secret-for-tests"


def thumbs_down(store: FeedbackStore, text: str, predicted_label: str) -> str:
    feedback_id = str(uuid.uuid4())
    store.record_verdict(feedback_id=feedback_id, text=text, model_name="tiny-tfidf", model_version="1",
                         predicted_label=predicted_label, confidence=0.7, verdict="down")
    return feedback_id


def label_radio(at: AppTest) -> Radio:
    (radio,) = at.radio
    return radio


def note_input(at: AppTest) -> TextInput:
    return next(t for t in at.text_input if t.label == "Note")


def save(at: AppTest) -> AppTest:
    at = next(b for b in at.button if b.label == "Save review").click().run()
    assert not at.exception, at.exception
    return at


def choose(at: AppTest, feedback_id: str) -> AppTest:
    at = at.selectbox(key="review_item").set_value(feedback_id).run()
    assert not at.exception, at.exception
    return at


def test_switching_items_shows_and_saves_each_items_own_values(app_env: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    store = FeedbackStore(get_settings().feedback_db)
    item_a = thumbs_down(store, "worst delay ever, lost my bag", predicted_label="positive")  # stored: negative
    item_b = thumbs_down(store, "love the crew, great trip", predicted_label="negative")  # stored: positive
    at = AppTest.from_file(str(MAIN), default_timeout=60).run()
    at.switch_page("../pages/review.py").run()
    at.text_input(key="secret_attempt").input(SECRET)
    at = at.button[0].click().run()
    assert not at.exception, at.exception

    at = choose(at, item_b)
    assert (label_radio(at).value, note_input(at).value) == ("positive", "")
    note_input(at).input("sarcasm")
    at = save(at)
    saved_b = store.get(item_b)
    assert (saved_b["true_label"], saved_b["review_note"], saved_b["review_state"]) == ("positive", "sarcasm",
                                                                                      "reviewed")

    at = choose(at, item_a)
    assert (label_radio(at).value, note_input(at).value) == ("negative", "")
    at = save(at)
    saved_a = store.get(item_a)
    assert (saved_a["true_label"], saved_a["review_note"], saved_a["review_state"]) == ("negative", "", "reviewed")
    assert store.get(item_b)["review_note"] == "sarcasm"

    at = choose(at, item_b)  # back on B: its saved values, not A's
    assert (label_radio(at).value, note_input(at).value) == ("positive", "sarcasm")
