"""The model families, by name: the one table the CLI, sweeps, demo data, packaging and
releases iterate over. Adding a family is adding its package with a ``family.py``
descriptor (:class:`insectml.spec.Family`) and its name to
:data:`insectml.runparams.FAMILY_NAMES`."""

from __future__ import annotations

import importlib

from insectml.runparams import FAMILY_NAMES
from insectml.spec import Family

FAMILIES: dict[str, Family] = {n: importlib.import_module(f"insectml.{n}.family").FAMILY for n in FAMILY_NAMES}
