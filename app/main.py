"""Entry script of the Streamlit product: it only declares the pages and routes to the current one."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent / "pages"


def run() -> None:
    """Build the navigation and run the selected page (a function, so tests and browsers can drive it)."""
    st.set_page_config(page_title="Tweet sentiment", page_icon=":material/flight:", layout="wide")
    pages = {
        "Product": [
            st.Page(PAGES_DIR / "predict.py", title="Predict", icon=":material/chat:", url_path="predict",
                    default=True),
            st.Page(PAGES_DIR / "compare.py", title="Compare models", icon=":material/insights:",
                    url_path="compare"),
        ],
        "Maintainer": [
            st.Page(PAGES_DIR / "review.py", title="Review feedback", icon=":material/lock:", url_path="review"),
            st.Page(PAGES_DIR / "about.py", title="About", icon=":material/info:", url_path="about"),
        ],
    }
    st.navigation(pages).run()


if __name__ == "__main__":
    run()
