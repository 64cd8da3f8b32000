"""The one training loop all neural model families share."""
