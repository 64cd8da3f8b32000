"""``insectml release`` and ``insectml models``: git tags in GTO's convention, a quality
gate against the latest release, a model card, and the model store.

Tags (made by the ``gto`` package): ``<name>@vX.Y.Z`` (annotated) for a release,
``<name>#<stage>#N`` for each promotion to a stage; the model store holds the archive,
the card and the plots under ``<name>/<version>/``.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from insectml.errors import ConfigError, UserError
from insectml.lineage import describe_data
from insectml.release.candidate import load_candidate
from insectml.release.card import write_card
from insectml.release.gate import check, next_version
from insectml.release.store import ModelStore


class GateFailed(UserError):
    """The candidate is worse than the latest release, changes its labels, or does not beat its baseline."""


def git_root(path: Path) -> Path:
    done = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"--repo {path}: not inside a git repository")
    return Path(done.stdout.strip())


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def latest_version(repo: Path, name: str) -> str | None:
    import gto.api
    from gto.exceptions import ArtifactNotFound

    try:
        found = gto.api.find_latest_version(str(repo), name)
    except ArtifactNotFound:
        return None
    return found.version if found else None


def release(
    results: Path,
    name: str,
    repo: Path,
    store_url: str,
    tolerance: float = 0.0,
    major: bool = False,
    stage: str | None = None,
    ref: str = "HEAD",
    allow_below_baseline: bool = False,
) -> dict:
    """Release the model in ``results`` as ``name``; returns what was done. Raises a
    one-line :class:`UserError` on a dirty tree, a model without lineage, a failed
    gate or an existing tag, before anything is written. ``allow_below_baseline``: release
    a candidate that does not beat its baseline (the card says so)."""
    import gto.api
    from gto.exceptions import GTOException

    repo = git_root(repo)
    if _git(repo, "status", "--porcelain", "--untracked-files=no").strip():
        raise ConfigError(f"{repo}: the working tree has uncommitted changes; commit or stash them before a release")
    candidate = load_candidate(results)
    store = ModelStore(store_url)
    previous = latest_version(repo, name)
    previous_card = store.card(name, previous) if previous else None
    if previous and previous_card is None:
        raise ConfigError(f"model store {store_url}: no card for the latest release {name}@{previous}")
    gate = check(
        candidate.headline,
        candidate.labels,
        previous_card,
        tolerance,
        major,
        verdict=candidate.verdict,
        allow_below_baseline=allow_below_baseline,
    )
    if not gate.passed:
        more = f" (and {len(gate.problems) - 1} more)" if len(gate.problems) > 1 else ""
        against = f" against {name}@{previous}" if previous else ""
        raise GateFailed(f"{name}: quality gate failed{against}: {gate.problems[0]}{more}")
    version = next_version(previous, gate.bump)
    tag = f"{name}@{version}"
    if _git(repo, "tag", "--list", tag).strip():
        raise ConfigError(f"{repo}: tag {tag} already exists")

    with tempfile.TemporaryDirectory() as tmp:
        cards = write_card(candidate, name, version, gate, previous, Path(tmp))
        folder = store.put(name, version, [candidate.archive, *cards, *candidate.plots])
    headline = ", ".join(f"{k} {v:.4f}" for k, v in candidate.headline.items())
    message = f"{name} {version} ({candidate.family}, {gate.bump}): {headline}; {describe_data(candidate.lineage.get('data', {}))}"
    try:
        gto.api.register(str(repo), name, ref, version=version, message=message)
        if stage:
            gto.api.assign(str(repo), name, stage, version=version, message=f"{name} {version} to {stage}")
    except GTOException as exc:
        store.fs.rm(folder, recursive=True)
        raise ConfigError(f"gto: {exc}") from None
    return {
        "name": name,
        "version": version,
        "tag": tag,
        "bump": gate.bump,
        "previous": previous,
        "stage": stage,
        "store": folder,
        "headline": candidate.headline,
        "below_baseline_allowed": gate.below_baseline_allowed,
    }


def promote(repo: Path, name: str, version: str, stage: str) -> str:
    """Assign ``name@version`` to ``stage`` (a ``name#stage#N`` tag); returns the tag."""
    import gto.api
    from gto.exceptions import GTOException

    try:
        tag = gto.api.assign(str(git_root(repo)), name, stage, version=version, message=f"{name} {version} to {stage}")
    except GTOException as exc:
        raise ConfigError(f"gto: {exc}") from None
    return str(getattr(tag, "name", tag))


def in_stage(repo: Path, name: str, stage: str) -> str | None:
    import gto.api
    from gto.exceptions import ArtifactNotFound

    try:
        found = gto.api.find_versions_in_stage(str(git_root(repo)), name, stage)
    except ArtifactNotFound:
        return None
    if not found:
        return None
    first = found[0] if isinstance(found, list) else found
    return first.version


def list_models(repo: Path, store_url: str | None) -> list[dict]:
    """Every released version: name, version, commit, current stages, headline metrics."""
    import gto.api

    repo = git_root(repo)
    store = ModelStore(store_url) if store_url else None
    rows = []
    for name in sorted(gto.api.show(str(repo))):
        versions = gto.api.show(str(repo), name)
        stages = {s["stage"] for v in versions for s in v.get("stages", [])}
        holders = {stage: in_stage(repo, name, stage) for stage in sorted(stages)}
        for v in versions:
            card = store.card(name, v["version"]) if store else None
            rows.append(
                {
                    "name": name,
                    "version": v["version"],
                    "commit": v["commit_hexsha"][:8],
                    "stages": [s for s, holder in holders.items() if holder == v["version"]],
                    "headline": (card or {}).get("headline", {}),
                }
            )
    return rows
