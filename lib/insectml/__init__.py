"""insectml: train, evaluate, package and serve insect-identification models."""

__version__ = "0.1.0"
