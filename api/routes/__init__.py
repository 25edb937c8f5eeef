"""One router per resource: predictions, models, health and the original project's routes."""
