"""Training pipeline: data → train → evaluate → register → export. Not shipped in the lean API image."""
