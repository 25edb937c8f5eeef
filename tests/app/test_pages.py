"""Every page through ``streamlit.testing.v1.AppTest``, with fake models (and one real tiny export)."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import streamlit as st
from streamlit.runtime.context import StreamlitHeaders
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Node

from api.settings import Settings as ApiSettings
from app import runs, services
from app.auth import LoginGuard
from app.settings import get_settings
from sentiment.batching import QueueFullError
from sentiment.feedback import FeedbackFilter, FeedbackStore
from sentiment.registry import ModelRegistry
from tests.app.conftest import FakePredictor, write_metadata, write_run_records
from tests.app.fake_ingestion import FakeIngestion

MAIN = Path(__file__).resolve().parents[2] / "app" / "entry" / "main.py"
PAGES = sorted(p.name for p in MAIN.parent.parent.joinpath("pages").glob("*.py"))
SECRET = "a-maintainer-secret-for-tests"
TIMEOUT = 60
ALL_ROWS = FeedbackFilter(verdict=None)


def new_app() -> AppTest:
    return AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)


def open_page(page: str) -> AppTest:
    at = new_app().run()
    at.switch_page(f"../pages/{page}").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def fakes(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, FakePredictor]:
    """Two fake models served through the real registry (metadata-only export folders)."""
    models = {"fake-lexicon": FakePredictor("fake-lexicon", aliases=("champion",)),
              "fake-other": FakePredictor("fake-other", version="2", aliases=())}
    root = app_env / "fake-exports"
    for name in models:
        (root / name).mkdir(parents=True)
        write_metadata(root / name, name=name, family="classical", variants={"onnx": "model.onnx"},
                       default_variant="onnx")

    def build(settings: object) -> ModelRegistry:
        return ModelRegistry(ApiSettings(exports_dir=root, warmup=False),
                             loader=lambda folder, threads=None: models[Path(folder).name])

    monkeypatch.setattr(services, "build_registry", build)
    return models


def store() -> FeedbackStore:
    return FeedbackStore(get_settings().feedback_db)


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def predict(at: AppTest, text: str) -> AppTest:
    at.text_area(key="tweet_text").input(text)
    return at.button(key="predict").click().run()


# -- navigation ------------------------------------------------------------------------------------------------
def test_default_page_is_predict_and_every_page_file_is_registered(fakes: dict) -> None:
    at = new_app().run()
    assert not at.exception
    assert at.title[0].value == "Tweet sentiment"
    assert PAGES == ["about.py", "compare.py", "predict.py", "review.py"]
    titles = {}
    for page in PAGES:  # switch_page refuses a file that st.navigation does not register
        at.switch_page(f"../pages/{page}").run()
        assert not at.exception, (page, at.exception)
        titles[page] = at.title[0].value
    assert titles == {"about.py": "About", "compare.py": "Compare models", "predict.py": "Tweet sentiment",
                      "review.py": "Review feedback"}


# -- prediction page ---------------------------------------------------------------------------------------------
def test_predict_shows_label_probabilities_and_the_tweet_as_plain_text(fakes: dict) -> None:
    at = predict(new_app().run(), "I love this **great** crew <script>x</script>")
    assert not at.exception
    assert at.metric[0].value == "Positive"
    assert captions(at)[0] == "45 / 280 characters"
    assert any("fake-lexicon v7" in c for c in captions(at))
    assert [t.value for t in at.text] == ["I love this **great** crew <script>x</script>"]
    assert len(at.get("plotly_chart")) == 1
    assert len(at.feedback) == 1 and at.feedback[0].value is None
    assert all("<script>" not in m.value for m in at.markdown)


def test_why_highlights_the_words_that_pushed_the_label_each_way(fakes: dict) -> None:
    at = new_app().run()
    at.toggle(key="explain").set_value(True)
    at = predict(at, "I love the crew but they lost my <b>bag</b>")
    assert not at.exception, at.exception
    assert any(h.value == "Why?" for h in at.subheader)
    shown = next(m.value for m in at.markdown if "<span" in m.value)
    # love pushed towards positive (green), lost towards negative (red); the tweet's own markup stays text.
    assert 'title="+' in shown.split(">love<")[0].rsplit("<span", 1)[1]
    assert "214,39,40" in shown.split(">lost<")[0].rsplit("<span", 1)[1]
    assert "&lt;b&gt;bag&lt;/b&gt;" in shown and "<b>" not in shown
    assert len(at.get("plotly_chart")) == 2  # the probabilities, and what each word added
    assert fakes["fake-lexicon"].calls == 1  # the tweet and every occlusion in one call


def test_about_shows_visitors_no_path_or_tracking_uri(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:token@mlflow.example/secret-path")
    get_settings.cache_clear()
    at = open_page("about.py")
    shown = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert str(get_settings().feedback_db) not in shown and "feedback.db" not in shown
    assert "mlflow.example" not in shown and "secret-path" not in shown


def test_model_picker_defaults_to_the_champion(fakes: dict) -> None:
    at = new_app().run()
    picker = at.selectbox(key="model")
    assert picker.value == "fake-lexicon" and picker.options == ["fake-lexicon (champion)", "fake-other"]
    picker.set_value("fake-other")
    at = predict(at, "worst flight, lost my bag")
    assert at.metric[0].value == "Negative" and any("fake-other v2" in c for c in captions(at))


@pytest.mark.parametrize("text, message", [("   ", "empty"), ("\u200b", "nothing visible"),
                                           ("x" * 1001, "1,001 characters")])
def test_empty_or_overlong_input_gets_a_clear_message(fakes: dict, text: str, message: str) -> None:
    """The page refuses what the API refuses (MAX_TEXT_CHARS, invisible-only text), with the API's limit."""
    at = predict(new_app().run(), text)
    assert message in at.warning[0].value
    if len(text) > 1000:
        assert "1 over the limit of 1,000" in captions(at)[0]
    assert not at.metric and not at.feedback
    assert sum(m.calls for m in fakes.values()) == 0


def test_a_text_longer_than_a_tweet_is_scored_as_the_api_would(fakes: dict) -> None:
    """281 to 1,000 characters: the API answers, so the page does too; the counter only guides."""
    at = predict(new_app().run(), "great crew " * 30)
    assert not at.warning and at.metric
    assert "longer than a tweet" in captions(at)[0]


def test_example_tweet_fills_the_text_area(fakes: dict) -> None:
    at = new_app().run()
    example = at.selectbox(key="example").options[0]
    at.selectbox(key="example").set_value(example).run()
    assert at.text_area(key="tweet_text").value == example


def test_one_address_cannot_flood_feedback(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit: 300 thumbs-up from one anonymous session took 17 s, with nothing to slow them."""
    monkeypatch.setenv("FEEDBACK_PER_CLIENT_PER_HOUR", "2")
    get_settings.cache_clear()
    services.feedback_limiter.clear()
    try:
        at = new_app().run()
        for number in range(3):
            at = predict(at, f"I love this great crew {number}")
            at.feedback[0].set_value(1).run()
            assert not at.exception
        assert "a lot of feedback from your address" in at.toast[0].value
        assert len(store().list(ALL_ROWS)) == 2  # the third was refused, and said so
    finally:
        services.feedback_limiter.clear()
        get_settings.cache_clear()


def test_thumbs_writes_one_row_and_a_second_click_updates_it(fakes: dict) -> None:
    at = predict(new_app().run(), "I love this great crew")
    at.feedback[0].set_value(0).run()  # thumbs down
    assert not at.exception
    assert "misclassified" in at.toast[0].value
    rows = store().list(ALL_ROWS)
    assert len(rows) == 1
    row = rows[0]
    assert (row["verdict"], row["predicted_label"], row["true_label"], row["model_name"], row["model_version"]) == (
        "down", "positive", "negative", "fake-lexicon", "7")
    assert row["text"] == "I love this great crew" and row["telemetry_state"] == "pending"
    at.feedback[0].set_value(1).run()  # changed mind: thumbs up on the same prediction
    rows = store().list(ALL_ROWS)
    assert len(rows) == 1 and (rows[0]["id"], rows[0]["verdict"], rows[0]["revision"]) == (row["id"], "up", 2)
    at = predict(at, "worst trip")  # a new prediction is a new row
    at.feedback[0].set_value(0).run()
    assert len(store().list(ALL_ROWS)) == 2


def test_all_models_view_shows_every_verdict(fakes: dict) -> None:
    at = new_app().run()
    at.toggle(key="compare_all").set_value(True)
    at = predict(at, "happy landing")
    table = at.dataframe[0].value
    assert list(table["model"]) == ["fake-lexicon", "fake-other"]
    assert len(at.get("plotly_chart")) == 2
    # One format for every percentage: "97.4%" beside "95.98%" was the column's own rounding.
    columns = json.loads(at.dataframe[0].proto.columns)
    assert columns["confidence"]["type_config"]["format"] == columns["p_positive"]["type_config"]["format"] == "%.1f%%"
    assert 50 <= table["confidence"].iloc[0] <= 100  # shown in percent, not as a fraction


def test_the_batch_model_picker_marks_the_champion(fakes: dict) -> None:
    picker = new_app().run().selectbox(key="batch_model")
    assert picker.options == ["fake-lexicon (champion)", "fake-other"] and picker.value == "fake-lexicon"


def test_the_batch_preview_shows_tweets_as_written_and_the_download_keeps_the_file(fakes: dict) -> None:
    """Audit: the preview showed Sentiment140's raw &quot;."""
    at = new_app().run()
    at.file_uploader(key="batch_file").set_value(
        ("mine.csv", b"text\n&quot;love it&quot; &amp; more\n", "text/csv")).run()
    at.button(key="score_batch").click().run()
    assert at.dataframe[0].value["text"].tolist() == ['"love it" & more']
    assert at.session_state["batch_result"]["text"].tolist() == ["&quot;love it&quot; &amp; more"]


def test_batch_tab_scores_an_uploaded_csv(fakes: dict) -> None:
    at = new_app().run()
    at.file_uploader(key="batch_file").set_value(
        ("mine.csv", b"text\nlove it\n\nworst delay\n", "text/csv")).run()
    at.button(key="score_batch").click().run()
    assert not at.exception
    result = at.dataframe[0].value
    assert list(result["label"]) == ["positive", "negative"]
    assert at.get("download_button")


def test_batch_tab_reports_a_bad_file(fakes: dict) -> None:
    at = new_app().run()
    at.file_uploader(key="batch_file").set_value(("bad.csv", b"", "text/csv")).run()
    at.button(key="score_batch").click().run()
    assert "empty" in at.error[0].value


def test_batch_tab_asks_for_the_text_column_when_none_is_named(fakes: dict) -> None:
    """Audit: a table without a recognised header was refused; the user may now say which column holds tweets."""
    at = new_app().run()
    data = b"id,when,body\n1,today,love this crew\n2,today,worst delay ever\n"
    at.file_uploader(key="batch_file").set_value(("mine.csv", data, "text/csv")).run()
    at.button(key="score_batch").click().run()
    assert not at.exception and not at.error and "which one holds the tweets" in at.info[0].value
    picker = at.selectbox(key="batch_text_column")
    assert picker.options == ["column 1: id", "column 2: when", "column 3: body"]
    picker.set_value(2)
    at.button(key="score_batch_column").click().run()
    assert not at.exception, at.exception
    assert at.session_state["batch_result"]["label"].tolist() == ["positive", "negative"]
    assert at.session_state["batch_result"]["id"].tolist() == ["1", "2"]  # the header stayed a header


def test_batch_results_are_charted_and_can_be_filtered(fakes: dict) -> None:
    at = new_app().run()
    data = b"text\nlove it\nworst delay\nhappy great love\n\n"
    at.file_uploader(key="batch_file").set_value(("mine.csv", data, "text/csv")).run()
    at.button(key="score_batch").click().run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2  # label shares and the confidence of each label
    at.multiselect(key="batch_labels").set_value(["positive"]).run()
    assert at.dataframe[0].value["label"].tolist() == ["positive", "positive"]
    at.slider(key="batch_min_confidence").set_value(0.9).run()
    assert at.dataframe[0].value["text"].tolist() == ["happy great love"]
    assert len(at.get("download_button")) == 2  # the whole file, and the rows shown


def test_real_tiny_onnx_export_end_to_end(app_env: Path) -> None:
    at = predict(new_app().run(), "what a lovely flight, great crew")
    assert not at.exception
    assert at.metric[0].value == "Positive" and any("tiny-tfidf v1" in c for c in captions(at))


def test_no_loadable_model_gives_a_message(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTS_DIR", str(app_env / "nothing-here"))
    get_settings.cache_clear()
    at = new_app().run()
    assert "No model is available" in at.error[0].value


# -- comparison page ---------------------------------------------------------------------------------------------
def test_compare_page_seeds_mlflow_and_draws_the_charts(compare_env: Path) -> None:
    at = open_page("compare.py")
    charts = at.get("plotly_chart")
    # metrics, trade-off, ROC, 3 confusion matrices, the transformer's loss
    assert len(charts) == 7
    # Which model answers by default, and why, with the served exports' measured figures.
    assert "The API answers with **tiny-tfidf**" in at.markdown[0].value and "champion" in at.markdown[0].value
    served = at.dataframe[0].value
    assert list(served["model"]) == ["tiny-tfidf"] and bool(served["default"].iloc[0])
    accuracy = at.dataframe[1].value  # per evaluation set; these runs predate the out-of-domain sets
    assert list(accuracy.columns) == ["model", "family", "test", "validation_random"]
    table = at.dataframe[2].value
    assert table["model"].iloc[0] == "tiny-tfidf" and bool(table["champion"].iloc[0])
    at.multiselect(key="families").set_value(["transformer"]).run()
    assert len(at.get("plotly_chart")) == 5 and len(at.dataframe[2].value) == 1
    at.multiselect(key="sets").set_value([]).run()
    assert "Pick at least one" in at.warning[0].value


def test_compare_page_without_runs(fakes: dict) -> None:
    at = open_page("compare.py")
    assert "No model runs yet" in at.info[0].value


# -- maintainer page ---------------------------------------------------------------------------------------------
def seed_feedback(n_down: int) -> None:
    feedback = store()
    for index in range(n_down):
        feedback.record_verdict(feedback_id=str(uuid.uuid4()), text=f"**bold** <i>claim</i> {index}",
                                model_name="fake-lexicon", model_version="7", predicted_label="positive",
                                confidence=0.7, verdict="down")
    feedback.record_verdict(feedback_id=str(uuid.uuid4()), text="fine", model_name="fake-lexicon",
                            model_version="7", predicted_label="positive", confidence=0.9, verdict="up")


def unlock(at: AppTest, secret: str) -> AppTest:
    at.text_input(key="secret_attempt").input(secret)
    return at.button[0].click().run()


def test_review_page_is_disabled_without_a_secret(fakes: dict) -> None:
    at = open_page("review.py")
    assert "disabled" in at.warning[0].value
    assert not at.text_input


def test_review_page_stays_locked_after_a_wrong_secret(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    seed_feedback(1)
    at = unlock(open_page("review.py"), "not-the-secret")
    assert at.error[0].value == "Wrong secret."
    assert not at.dataframe and not at.code


def test_unlocked_review_page_lists_reviews_and_alerts(fakes: dict) -> None:
    seed_feedback(4)
    at = new_app()
    at.secrets["MAINTAINER_SECRET"] = SECRET  # st.secrets works as well as the environment
    at.run()
    at.switch_page("../pages/review.py").run()
    at = unlock(at, SECRET)
    assert not at.exception
    assert "ALERT: 4 tweets" in at.error[0].value
    assert "Telemetry is off" in at.info[0].value
    assert [m.value for m in at.metric] == ['5', '0', '0']  # 4 thumbs down + 1 up, all pending
    table = at.dataframe[0].value
    assert len(table) == 4 and "fine" not in set(table["text"])  # thumbs-down only
    shown = at.code[0].value
    assert shown.startswith("**bold** <i>claim</i>")  # user text as a code block, never markdown or HTML
    assert all("<i>" not in m.value for m in at.markdown)
    at.radio[0].set_value("positive")
    next(t for t in at.text_input if t.label == "Note").input("sarcasm")
    next(b for b in at.button if b.label == "Save review").click().run()
    assert not at.exception
    reviewed = [r for r in store().list() if r["review_state"] == "reviewed"]
    assert len(reviewed) == 1 and (reviewed[0]["true_label"], reviewed[0]["review_note"]) == ("positive", "sarcasm")
    at.selectbox(key="state").set_value("reviewed").run()
    assert len(at.dataframe[0].value) == 1
    exported = at.get("download_button")
    assert exported


def test_flush_now_sends_pending_rows(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeIngestion().start()
    try:
        monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", fake.connection_string)
        monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
        monkeypatch.setenv("TELEMETRY_FLUSH_INTERVAL_S", "3600")
        get_settings.cache_clear()
        services.telemetry_flusher().stop()  # only the button may send in this test
        seed_feedback(2)
        at = unlock(open_page("review.py"), SECRET)
        assert [m.value for m in at.metric] == ['3', '0', '0']
        at.button(key="flush_now").click().run()
        assert not at.exception
        assert [m.value for m in at.metric] == ['0', '0', '3']
        assert len(fake.feedback_ids()) == 3
    finally:
        services.telemetry_flusher().stop()
        fake.stop()


def test_about_page_lists_the_models(fakes: dict) -> None:
    at = open_page("about.py")
    table = at.dataframe[0].value
    assert list(table["model"]) == ["fake-lexicon", "fake-other"] and list(table["champion"]) == [True, False]


def test_operator_text_stays_out_of_the_users_way(fakes: dict) -> None:
    """"Telemetry is off (APPLICATIONINSIGHTS_CONNECTION_STRING not set)" was on every Predict and About page."""
    predict_page = predict(new_app().run(), "I love this great crew")
    assert not any("Telemetry" in text or "APPLICATIONINSIGHTS" in text for text in captions(predict_page))
    about = open_page("about.py")
    operators = about.expander[0]
    assert operators.label == "For operators"
    outside = [c.value for c in about.caption if all(c.value != inner.value for inner in operators.caption)]
    assert not any("Telemetry" in text for text in outside)
    assert any("Telemetry is off" in c.value for c in operators.caption)


def _texts(node: Node) -> Iterator[str]:
    yield str(node.proto)
    if isinstance(node, Block):
        for child in node.children.values():
            yield from _texts(child)


def rendered_text(at: AppTest) -> str:
    """Everything the pages sent to the browser, as protobuf text."""
    return "\n".join([*_texts(at.main), *_texts(at.sidebar)])


def test_pages_never_show_the_tracking_uri_credentials(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "https://alice:pa55-word@mlflow.example:8443/base?token=t0ken-value&workspace=7"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    get_settings.cache_clear()

    def unreachable(tracking_uri: str) -> None:  # as MLflow words it: the URL it called, credentials included
        raise ConnectionError(f"API request to {tracking_uri}/api/2.0/mlflow/runs/search failed")

    monkeypatch.setattr(runs, "search_runs", unreachable)
    about, compare = open_page("about.py"), open_page("compare.py")
    assert "Could not read the runs" in compare.error[0].value
    for at in (about, compare):
        text = rendered_text(at)
        # Compare names the server it could not read, redacted; About no longer shows visitors the URI at all.
        assert ("mlflow.example:8443/base" in text and "workspace=7" in text) == (at is compare)
        assert "alice" not in text and "pa55-word" not in text and "t0ken-value" not in text


@pytest.mark.parametrize("message", [
    "HTTPSConnectionPool(host='mlflow.example', port=8443): Max retries exceeded with url: "
    "/base?token=t0ken-value&workspace=7/api/2.0/mlflow/runs/search",  # urllib3 quotes path and query: no URI
    "Max retries exceeded with url: /base%3Ftoken%3Dt0ken-value%26workspace%3D7",
])
def test_the_token_never_shows_whatever_the_error_quotes(fakes: dict, monkeypatch: pytest.MonkeyPatch,
                                                         message: str) -> None:
    """Audit: the whole-URI replacement missed a token that urllib3 had re-quoted into its message."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example:8443/base?token=t0ken-value&workspace=7")
    get_settings.cache_clear()

    def unreachable(tracking_uri: str) -> None:
        raise ConnectionError(message)

    monkeypatch.setattr(runs, "search_runs", unreachable)
    compare = open_page("compare.py")
    assert "Max retries exceeded" in compare.error[0].value
    assert "t0ken-value" not in rendered_text(compare)


# -- maintainer lock: per-address delay, lock button, expiry ------------------------------------------------------
class FakeContext:
    """``st.context`` of the connection under test: the peer address and its X-Forwarded-For header."""

    def __init__(self) -> None:
        self.ip_address: str | None = None
        self.headers = StreamlitHeaders([])

    def connect(self, peer: str | None, forwarded_for: str | None = None) -> None:
        self.ip_address = peer
        self.headers = StreamlitHeaders([("X-Forwarded-For", forwarded_for)] if forwarded_for else [])


@pytest.fixture
def connection(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> FakeContext:
    """A maintainer page with a 30 s delay after a wrong secret (not slept here) and a settable client."""
    fake = FakeContext()
    monkeypatch.setattr(st, "context", fake)
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    monkeypatch.setenv("MAINTAINER_FAILED_LOGIN_DELAY_S", "30")
    monkeypatch.setattr(services, "LoginGuard", functools.partial(LoginGuard, sleep=lambda _: None))
    get_settings.cache_clear()
    return fake


def is_unlocked(at: AppTest) -> bool:
    assert not at.exception, at.exception
    return [m.label for m in at.metric] == ["Telemetry pending", "Failed, retrying", "Sent"]


def test_a_guessing_address_is_slowed_while_another_logs_in_at_once(connection: FakeContext) -> None:
    connection.connect("203.0.113.9")
    guesser = open_page("review.py")
    for attempt in range(7):
        guesser = unlock(guesser, f"guess-{attempt}")
    guesser = unlock(guesser, SECRET)
    assert "Too many wrong attempts" in guesser.error[0].value and not is_unlocked(guesser)
    connection.connect("198.51.100.7")
    assert is_unlocked(unlock(open_page("review.py"), SECRET))


def test_forwarded_for_is_ignored_from_an_untrusted_peer_and_honoured_from_a_trusted_proxy(
        connection: FakeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    connection.connect("203.0.113.9", forwarded_for="192.0.2.1")
    unlock(open_page("review.py"), "guess")
    connection.connect("203.0.113.9", forwarded_for="192.0.2.2")  # a made-up header does not dodge the delay
    at = unlock(open_page("review.py"), SECRET)
    assert "Too many wrong attempts" in at.error[0].value and not is_unlocked(at)

    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8")
    get_settings.cache_clear()
    connection.connect("10.0.0.2", forwarded_for="192.0.2.1")
    unlock(open_page("review.py"), "guess")
    connection.connect("10.0.0.2", forwarded_for="192.0.2.2")  # another visitor behind the same proxy
    assert is_unlocked(unlock(open_page("review.py"), SECRET))
    connection.connect("10.0.0.2", forwarded_for="192.0.2.1")
    at = unlock(open_page("review.py"), SECRET)
    assert "Too many wrong attempts" in at.error[0].value and not is_unlocked(at)


def test_the_lock_button_locks_the_review_page(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    seed_feedback(1)
    at = unlock(open_page("review.py"), SECRET)
    assert is_unlocked(at) and at.dataframe
    at = next(b for b in at.button if b.label == "Lock").click().run()
    assert not is_unlocked(at) and not at.dataframe and not at.code
    assert at.text_input(key="secret_attempt").value == ""
    at = at.run()
    assert not is_unlocked(at) and not at.dataframe


def test_the_unlocked_review_page_locks_itself_after_the_session_ttl(fakes: dict,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    monkeypatch.setenv("MAINTAINER_SESSION_TTL_MIN", "30")
    seed_feedback(1)
    at = unlock(open_page("review.py"), SECRET)
    at.session_state["maintainer_unlocked_at"] -= 29 * 60
    at = at.run()
    assert is_unlocked(at) and at.dataframe
    at.session_state["maintainer_unlocked_at"] -= 2 * 60
    at = at.run()
    assert not is_unlocked(at) and not at.dataframe
    assert "30 minutes" in at.info[0].value
    assert is_unlocked(unlock(at, SECRET))


# -- prediction page under a busy queue (audit finding 8) ----------------------------------------------------------
def always_busy(model: FakePredictor, monkeypatch: pytest.MonkeyPatch, retry_after: int) -> list[int]:
    """Make ``model`` refuse every call the way a full queue does; the returned list counts the attempts."""
    attempts: list[int] = []

    def refuse(texts: object) -> None:
        attempts.append(1)
        raise QueueFullError("model is busy", retry_after)

    monkeypatch.setattr(model, "predict_proba", refuse)
    return attempts


def test_a_busy_queue_gives_a_single_prediction_a_clear_message(fakes: dict,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    always_busy(fakes["fake-lexicon"], monkeypatch, retry_after=5)
    at = predict(new_app().run(), "I love this great crew")
    assert not at.exception, at.exception
    assert "try again in 5 s" in at.warning[0].value
    assert not at.metric and not at.feedback


def test_a_busy_queue_gives_the_all_models_view_a_clear_message(fakes: dict,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    always_busy(fakes["fake-other"], monkeypatch, retry_after=3)
    at = new_app().run()
    at.toggle(key="compare_all").set_value(True)
    at = predict(at, "happy landing")
    assert not at.exception, at.exception
    assert "try again in 3 s" in at.warning[0].value
    assert not at.metric and not at.dataframe


def test_batch_tab_retries_a_busy_queue_then_keeps_nothing(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    at = new_app().run()
    at.file_uploader(key="batch_file").set_value(("mine.csv", b"text\nlove it\nworst delay\n", "text/csv")).run()
    at.button(key="score_batch").click().run()
    assert list(at.dataframe[0].value["label"]) == ["positive", "negative"]
    attempts = always_busy(fakes["fake-lexicon"], monkeypatch, retry_after=0)
    at.file_uploader(key="batch_file").set_value(("other.csv", b"text\nhappy\n", "text/csv")).run()
    at.button(key="score_batch").click().run()
    assert not at.exception, at.exception
    assert len(attempts) > 1  # retried before giving up
    assert "busy" in at.error[0].value and "nothing was kept" in at.error[0].value
    assert not at.dataframe and not at.get("download_button")  # neither half of this file nor the last one


def test_batch_tab_refuses_a_file_over_the_row_limit(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_MAX_ROWS", "3")
    get_settings.cache_clear()
    at = new_app().run()
    rows = "".join(f"made-up tweet {i}\n" for i in range(50)).encode()
    at.file_uploader(key="batch_file").set_value(("big.csv", rows, "text/csv")).run()
    at.button(key="score_batch").click().run()
    assert "limit is 3" in at.error[0].value
    assert sum(m.calls for m in fakes.values()) == 0


# -- shareable views: URL query parameters ------------------------------------------------------------------------
def open_with_params(page: str, **params: str | list[str]) -> AppTest:
    """A page opened from a link that carries ``params`` (as ``?name=value``; lists repeat the name)."""
    at = new_app()
    at.run()
    for name, value in params.items():
        at.query_params[name] = value
    at.switch_page(f"../pages/{page}").run()
    assert not at.exception, at.exception
    return at


def test_predict_link_prefills_the_tweet_and_model_but_does_not_predict(fakes: dict) -> None:
    text = "worst delay ever, lost my bag"
    at = new_app()
    at.query_params["text"] = text
    at.query_params["model"] = "fake-other"
    at.run()
    assert not at.exception, at.exception
    assert at.text_area(key="tweet_text").value == text
    assert at.selectbox(key="model").value == "fake-other"
    assert not at.metric and not at.feedback and "prediction" not in at.session_state
    assert sum(m.calls for m in fakes.values()) == 0
    at = at.button(key="predict").click().run()  # the user asks for it
    assert at.metric[0].value == "Negative" and any("fake-other v2" in c for c in captions(at))


def test_predict_drops_the_shared_text_from_the_url_once_it_is_edited(fakes: dict) -> None:
    at = new_app()
    at.query_params["text"] = "a shared tweet"
    at.run()
    at.text_area(key="tweet_text").input("my own words, not for the address bar").run()
    assert "text" not in at.query_params
    assert at.text_area(key="tweet_text").value == "my own words, not for the address bar"


def test_predict_ignores_an_unknown_model_in_the_url(fakes: dict) -> None:
    at = new_app()
    at.query_params["model"] = "no-such-model"
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="model").value == "fake-lexicon"


def test_compare_link_ignores_unknown_values(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exports = app_env / "exports"
    write_run_records(exports / "runs")
    monkeypatch.setenv("EXPORTS_DIR", str(exports))
    get_settings.cache_clear()
    at = open_with_params("compare.py", families=["no-such-family", "lexicon"], tradeoff="no-such-set")
    assert at.multiselect(key="families").value == ["lexicon"]
    assert at.selectbox(key="tradeoff").value == at.multiselect(key="sets").value[0]


def test_compare_link_selects_families_sets_and_the_tradeoff_set(compare_env: Path) -> None:
    at = open_with_params("compare.py", families="transformer", sets=["test", "validation_random"],
                          tradeoff="validation_random")
    assert at.multiselect(key="families").value == ["transformer"]
    assert at.multiselect(key="sets").value == ["test", "validation_random"]
    assert at.selectbox(key="tradeoff").value == "validation_random"
    assert len(at.dataframe[0].value) == 1  # the transformer's run only


def test_review_link_keeps_filters_only_and_stays_locked(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    seed_feedback(2)
    at = open_with_params("review.py", state="reviewed", filter_model="fake-lexicon", confidence=["0.6", "0.9"],
                          dates=["2025-01-01", "2025-01-31"], secret=SECRET, maintainer_secret=SECRET)
    assert at.text_input(key="secret_attempt").value == ""
    assert not at.dataframe and not at.code and not at.metric  # still locked: a secret in a URL is no secret
    assert "secret" not in at.query_params and "maintainer_secret" not in at.query_params  # dropped, unread
    at = unlock(at, SECRET)
    assert not at.exception, at.exception
    assert at.selectbox(key="state").value == "reviewed" and at.selectbox(key="filter_model").value == "fake-lexicon"
    assert at.slider(key="confidence").value == (0.6, 0.9)
    assert at.date_input(key="dates").value == (date(2025, 1, 1), date(2025, 1, 31))
    assert "Misclassified tweets (0)" in [s.value for s in at.subheader]


def test_review_link_with_unknown_filter_values_shows_everything(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    seed_feedback(2)
    at = unlock(open_with_params("review.py", filter_model="no-such-model", label="neutral"), SECRET)
    assert not at.exception, at.exception
    assert (at.selectbox(key="filter_model").value, at.selectbox(key="label").value) == ("(all)", "(all)")
    assert "Misclassified tweets (2)" in [s.value for s in at.subheader]


def test_default_model_summary_says_why_and_orders_by_accuracy() -> None:
    from types import SimpleNamespace

    from app import services

    def served(name: str, accuracy: float, p50: float) -> SimpleNamespace:
        metrics = {"validation_random": {"accuracy": accuracy, "latency_p50_ms": p50, "throughput_batch32": 100.0}}
        return SimpleNamespace(name=name, version="1", metadata={"metrics": metrics})

    models = [served("minilm", 0.83, 0.8), served("mpnet", 0.85, 10.3)]
    registry = SimpleNamespace(default_name="mpnet", champion="mpnet", models=lambda: models)
    note, table = services.default_model_summary(registry)
    assert "**mpnet**" in note and "best validation_random accuracy" in note
    assert list(table["model"]) == ["mpnet", "minilm"] and list(table["default"]) == [True, False]

    registry.default_name = "minilm"  # DEFAULT_MODEL set: the note must say so, not claim the rule
    note, table = services.default_model_summary(registry)
    assert "**minilm**" in note and "DEFAULT_MODEL" in note and list(table["champion"]) == [True, False]
