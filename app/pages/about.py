"""About page: the served models, where the API is, and what telemetry sends."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import services, ui
from app.settings import get_settings

st.title("About")
registry = ui.require_models()
champion = services.champion_name(registry)
st.dataframe(pd.DataFrame([{
    "model": m.name, "champion": m.name == champion, "version": m.version, "family": m.predictor.family,
    "variant": m.predictor.variant, "accuracy (validation_random)":
        m.metadata.get("metrics", {}).get("validation_random", {}).get("accuracy"),
} for m in registry.models()]), hide_index=True)
st.markdown("The same models answer over HTTP under [`/api`](/api/docs): `POST /api/v1/predict`, "
            "`POST /api/v1/predict/batch`, `GET /api/v1/models`, and the original service's `POST /api/predict`.")
# Paths and variables mean something to whoever runs the service, not to its users; where the data lives is not a
# visitor's business either (the maintainer's Review page, behind its secret, says where feedback is kept).
with st.expander("For operators"):
    settings = get_settings()
    flusher = services.telemetry_flusher()
    st.markdown(
        f"- Telemetry: **{'on' if flusher.enabled else 'off'}**; tweet text "
        f"{'included' if settings.telemetry_include_text else 'not included'} in events (TELEMETRY_INCLUDE_TEXT)")
    ui.telemetry_notice()
