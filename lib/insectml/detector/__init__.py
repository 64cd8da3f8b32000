"""Insect detectors: Supervisely box labels → generic detector → pseudo-labels → target detector."""
