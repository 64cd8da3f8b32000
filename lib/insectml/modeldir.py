"""The files every model folder has, whatever the family: ``config.json`` (how to rebuild
and run the model), ``labels.json`` (class names, in output order), ``train_metrics.json``
and ``lineage.json`` (:func:`insectml.lineage.collect`). The weights beside them are the
family's own (``weights.pt``, ``model.joblib``)."""

from __future__ import annotations

from pathlib import Path

from insectml.fileio import write_json_atomic


def write_model_dir(out: Path, *, config: dict, labels: list[str], train_metrics: dict, lineage: dict) -> Path:
    """Write the four JSON files into ``out`` (made if missing), each atomically; returns ``out``."""
    for name, data in (
        ("config.json", config),
        ("labels.json", labels),
        ("train_metrics.json", train_metrics),
        ("lineage.json", lineage),
    ):
        write_json_atomic(Path(out) / name, data)
    return Path(out)
