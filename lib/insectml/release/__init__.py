"""Releases: quality gate, model cards, GTO tags, the model store, deployment to MMS."""
