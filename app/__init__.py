"""The Streamlit product: prediction with thumbs feedback, model comparison, maintainer review, API at /api."""
