"""Small Streamlit fragments shared by several pages."""

from __future__ import annotations

import streamlit as st

from app import services
from sentiment.registry import ModelRegistry, NotReadyError


def telemetry_notice() -> None:
    """One line saying whether feedback reaches Application Insights."""
    flusher = services.telemetry_flusher()
    if flusher.enabled:
        st.caption(":material/cloud_done: Telemetry on: feedback is also sent to Application Insights.")
    else:
        st.caption(":material/cloud_off: Telemetry is off (APPLICATIONINSIGHTS_CONNECTION_STRING not set): "
                   "feedback is kept in the local database only.")


def require_models() -> ModelRegistry:
    """The loaded registry, or an error message and a stopped page when no model could be loaded."""
    try:
        return services.ready_registry()
    except NotReadyError as error:
        st.error(f"No model is available: {error}. Check EXPORTS_DIR (see the README).", icon=":material/error:")
        st.stop()
