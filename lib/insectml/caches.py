"""Where insectml's libraries keep their caches: a leaf module, safe to import first."""

from __future__ import annotations

import os
from pathlib import Path


def default_caches() -> None:
    """Point numba's and matplotlib's caches under ``$INSECTML_CACHE`` (default
    ``~/.cache/insectml``) unless the environment already chose. Call it before
    librosa or matplotlib is imported; variables already set are left alone."""
    # librosa's first call JIT-compiles with numba (~20 s); keep those binaries.
    cache = Path(os.environ.get("INSECTML_CACHE", Path.home() / ".cache" / "insectml"))
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache / "numba"))
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
