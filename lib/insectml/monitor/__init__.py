"""Drift monitoring of served models: ``insectml monitor LOG --reference RESULTS``.

Compares the traffic in a server's prediction log (:mod:`insectml.monitor.logs`) with the
data the served model was released with, found in its family's results folder
(:mod:`insectml.monitor.reference`), and says whether it has drifted:

- wingbeat: per-feature drift of the engineered features (PSI and two-sample
  Kolmogorov–Smirnov, Benjamini–Hochberg over the features);
- images (few-shot embeddings, detector pooled backbone features): embedding drift by
  maximum mean discrepancy (RBF kernel, permutation p-value) and a classifier two-sample
  test (logistic regression AUC with a bootstrap interval);
- every family: confidence drift (KS on the top score), class-mix drift (chi-square and
  Jensen–Shannon distance); few-shot: unknown-rate drift (two-proportion z-test);
  detector: boxes per image.

Writes ``monitor.json`` (every test: statistic, p-value, effect size, threshold, flagged)
and ``report.html``; the CLI exits 3 when a test crosses its threshold, so a scheduled job
can alert.

Why scipy and scikit-learn directly, not Evidently or alibi-detect: the tests are a few
dozen lines on top of ``scipy.stats`` (``ks_2samp``, ``chi2_contingency``,
``false_discovery_control``) and scikit-learn (logistic regression, AUC), both already
pinned by the library; MMD with a permutation test is a few numpy matrix products.
Evidently and alibi-detect are not installed and would pull heavy, conflicting pins
(pandas/pydantic versions, TensorFlow or a second PyTorch stack for alibi-detect) into an
environment that must also run MMS and Nextflow tasks; and they bring their own HTML
reports, where ours must be the one report template every family uses.

The public API: :func:`monitor` (run everything, write the files), :func:`compare` (the
tests on two :class:`Sample`), :class:`Thresholds`, :class:`Sample` (its ``save`` writes
the ``monitor_reference.npz`` a pipeline step can leave in a results folder).
"""

from __future__ import annotations

_LAZY = {
    "monitor": "insectml.monitor.run",
    "compare": "insectml.monitor.run",
    "Outcome": "insectml.monitor.run",
    "Thresholds": "insectml.monitor.drift",
    "Result": "insectml.monitor.drift",
    "Sample": "insectml.monitor.logs",
    "read_log": "insectml.monitor.logs",
    "load_reference": "insectml.monitor.reference",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    # numpy and scipy load when a name is used, not when the CLI registers its commands
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'insectml.monitor' has no attribute {name!r}")
