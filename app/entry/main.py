"""Entry script of the Streamlit product: it only declares the pages and routes to the current one.

This script sits in ``app/entry/``, not beside ``app/pages/``: Streamlit treats a ``pages/`` folder next to the
entry script as a v1 multipage app until ``st.navigation`` has run once in the process, so the first visit after
a start through a page's own URL (``/review``) ran that file alone, outside this navigation.
``app/entry/.streamlit/config.toml`` sits beside this script: Streamlit reads it whatever the working directory.

Streamlit gives the default page the root URL and ignores its own path, so Predict is not the default page:
a hidden default page sends ``/`` (with its query parameters) to ``/predict``, and ``/predict`` works directly.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"
APP_TITLE = "Tweet sentiment"


def run() -> None:
    """Build the navigation and run the selected page (a function, so tests and browsers can drive it)."""
    predict = st.Page(PAGES_DIR / "predict.py", title="Predict", icon=":material/chat:", url_path="predict")

    def home() -> None:
        st.switch_page(predict, query_params=st.query_params.to_dict())

    pages = {
        "": [st.Page(home, title=APP_TITLE, url_path="home", default=True, visibility="hidden")],
        "Product": [
            predict,
            st.Page(PAGES_DIR / "compare.py", title="Compare models", icon=":material/insights:",
                    url_path="compare"),
        ],
        "Maintainer": [
            st.Page(PAGES_DIR / "review.py", title="Review feedback", icon=":material/lock:", url_path="review"),
            st.Page(PAGES_DIR / "about.py", title="About", icon=":material/info:", url_path="about"),
        ],
    }
    page = st.navigation(pages)
    # Set once the page is known, so the browser tab names it ("Compare models · Tweet sentiment").
    title = APP_TITLE if page.title == APP_TITLE else f"{page.title} · {APP_TITLE}"
    st.set_page_config(page_title=title, page_icon=":material/flight:", layout="wide")
    page.run()


if __name__ == "__main__":
    run()
