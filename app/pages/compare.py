"""Compare page (analysts): the models' MLflow runs side by side."""

from __future__ import annotations

import streamlit as st

from app import charts, runs, services
from app.settings import get_settings, redact_text, redact_uri

settings = get_settings()
uri = settings.mlflow_tracking_uri
shown_uri = redact_uri(uri)
st.title("Compare models")
top = st.columns([4, 1])
top[0].caption(f"Runs read from MLflow ({shown_uri}); an empty store is first seeded from {settings.runs_dir}.")
if top[1].button("Refresh runs", key="refresh_runs"):
    services.clear_runs_cache()
try:
    all_runs = services.runs_frame(uri, str(settings.runs_dir), settings.seed_runs)
except Exception as error:  # an unreachable tracking server, a locked or foreign database
    # MLflow's messages quote the URL it called, credentials included
    st.error(f"Could not read the runs from MLflow at {shown_uri}: {redact_text(str(error), uri)}",
             icon=":material/error:")
    st.stop()
latest = runs.latest_per_model(all_runs)
if latest.empty:
    st.info("No model runs yet: train with `make train`, or put run records in exports/runs/ and refresh.")
    st.stop()

colors = charts.model_colors(latest["model"])  # every model keeps its colour whatever the filters
registry = services.model_registry()
champion = services.champion_name(registry) if registry.ready else None
if registry.ready:
    st.subheader("Default model")
    note, served = services.default_model_summary(registry)
    st.markdown(note)
    st.dataframe(served, hide_index=True, key="served_models", column_config={
        "validation_random accuracy": st.column_config.NumberColumn(format="%.4f"),
        "p50 ms (one tweet)": st.column_config.NumberColumn(format="%.2f"),
        "tweets/s (batch 32)": st.column_config.NumberColumn(format="%.0f")})
families = sorted(latest["family"].unique())
sets = runs.available_sets(latest) or list(runs.EVAL_SETS)
left, right = st.columns(2)
# Bound to the URL (?families=…&sets=…&tradeoff=…): a filtered view can be shared as a link.
chosen_families = left.multiselect("Model family", families, default=families, key="families", bind="query-params")
chosen_sets = right.multiselect("Evaluation set", sets, default=sets, key="sets", bind="query-params")
shown = latest[latest["family"].isin(chosen_families)]
if shown.empty or not chosen_sets:
    st.warning("Pick at least one model family and one evaluation set.")
    st.stop()

tidy = runs.tidy_metrics(shown, sets=chosen_sets)
if not tidy.empty:
    st.plotly_chart(charts.metrics_by_model(tidy, champion), key="metrics_chart")
st.caption("Accuracy per evaluation set; out of domain (human-labelled recent tweets): "
           + ", ".join(f"{name} ({what})" for name, what in runs.OUT_OF_DOMAIN_SETS.items())
           + f". {runs.MISSING}: the run was not scored on that set.")
st.dataframe(runs.styled(runs.accuracy_by_set(shown, chosen_sets)), hide_index=True, key="accuracy_by_set")

focus = st.selectbox("Evaluation set for the trade-off, ROC curves and confusion matrices", chosen_sets,
                     key="tradeoff", bind="query-params")
points = runs.tradeoff_points(shown, focus)
if points[["accuracy", "latency_ms"]].notna().all(axis=1).any():
    st.plotly_chart(charts.accuracy_vs_latency(points, champion, focus, colors), key="tradeoff_chart")
unscored = runs.unscored(shown, focus)
if unscored:
    st.caption(f"Not scored on {focus}, so not drawn: {', '.join(unscored)}.")

curves, matrices = {}, {}
for _, run in shown.iterrows():
    roc = services.run_artifact(uri, run["run_id"], f"eval/{focus}/roc_curve.json")
    if roc:
        curves[run["model"]] = roc
    matrix = services.run_artifact(uri, run["run_id"], f"eval/{focus}/confusion_matrix.json")
    if matrix:
        matrices[run["model"]] = matrix
if curves:
    st.plotly_chart(charts.roc_curves(curves, focus, colors), key="roc_chart")
if matrices:
    st.subheader(f"Confusion matrices ({focus})")
    columns = st.columns(min(3, len(matrices)))
    for index, (model, matrix) in enumerate(matrices.items()):
        with columns[index % len(columns)]:
            st.plotly_chart(charts.confusion_matrix(matrix["matrix"], matrix["labels"], model, colors.get(model)),
                            key=f"cm_{model}")

for _, run in shown[shown["family"] == "transformer"].iterrows():
    history = services.run_metric_history(uri, run["run_id"], "train_loss")
    if not history.empty:
        st.plotly_chart(charts.loss_history(history, f"Training loss — {run['model']}"), key=f"loss_{run['run_id']}")

st.subheader("Runs")
table = runs.runs_table(all_runs, champion)
table = table[table["family"].isin(chosen_families)]
st.dataframe(runs.styled(table, highlight="champion"), hide_index=True)

st.subheader("Feedback per model version")
st.caption("Thumbs up and down from the product, after the maintainer's review; counts only, no tweet text.")
verdicts = services.feedback_store().verdict_history()
if verdicts:
    ageing, by_version = charts.feedback_ageing(verdicts, settings.exports_dir, services.alert_rule(), colors)
    st.plotly_chart(ageing, key="ageing_chart")
    st.dataframe(by_version, hide_index=True, key="ageing_table",
                 column_config={"accuracy": st.column_config.NumberColumn(format="percent")})
else:
    st.info("No feedback yet: thumbs up and down on the Predict page show up here per model version.")
