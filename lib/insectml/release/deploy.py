"""``insectml deploy``: put a released version on a running Multi Model Server, check it
answers, retire the version it replaces; or roll back to the release before.

MMS 1.1 has no model versions, so each release is served under its own name,
``<name>_v<X>_<Y>_<Z>`` (``/predictions/wingbeat_v1_2_0``); what is deployed is read back
from the server's management API, so no state file can disagree with the server.
"""

from __future__ import annotations

import json
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from insectml.errors import ConfigError, UserError
from insectml.fileio import copy_atomic
from insectml.release.gate import semver
from insectml.release.store import ModelStore, file_name

CONTENT_TYPES = {".wav": "audio/wav", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


class DeployFailed(UserError):
    """The new version did not register or did not answer; the previous one still serves."""


def served_name(name: str, version: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{name}_{version}")


def deployed_versions(management_url: str, name: str) -> list[str]:
    """Versions of ``name`` registered on the server (normally one)."""
    try:
        with urllib.request.urlopen(f"{management_url}/models?limit=1000", timeout=30) as r:
            models = json.load(r).get("models", [])
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"--mms {management_url}: no Multi Model Server answers ({exc})") from None
    pattern = re.compile(rf"^{re.escape(name)}_v(\d+)_(\d+)_(\d+)$")
    found = [m.group(1, 2, 3) for m in (pattern.match(x.get("modelName", "")) for x in models) if m]
    return [f"v{a}.{b}.{c}" for a, b, c in sorted(found, key=lambda t: tuple(map(int, t)))]


def deploy(
    name: str,
    version: str,
    management_url: str,
    inference_url: str,
    store_url: str,
    mms_store: Path,
    sample: Path,
    workers: int = 1,
) -> dict:
    """Register ``name@version`` next to what is deployed, smoke-test it with ``sample``,
    then unregister the others. On any failure the new one is removed again and
    :class:`DeployFailed` says why; the previous version keeps serving."""
    from insectml.serving.mms import predict, register, unregister

    if not sample.is_file():
        raise ConfigError(f"--sample {sample}: file not found")
    store = ModelStore(store_url)
    card = store.card(name, version)
    if card is None:
        raise ConfigError(f"model store {store_url}: {name}@{version} is not released there")
    # the card comes from the store, which others can write: its archive is a name in the version's folder
    archive = file_name(card.get("archive"), f"model store {store_url}: {name}@{version} model_card.json 'archive'")
    previous = deployed_versions(management_url, name)
    if version in previous:
        raise ConfigError(f"{name}@{version} is already deployed on {management_url}")
    new = served_name(name, version)
    archive_name = f"{new}.mar"
    with tempfile.TemporaryDirectory() as tmp:
        fetched = store.fetch(name, version, archive, Path(tmp))
        if not mms_store.is_dir():
            raise ConfigError(f"--mms-store {mms_store}: folder not found (the server's --model-store)")
        copy_atomic(fetched, mms_store / archive_name)

    try:
        register(management_url, archive_name, new, initial_workers=workers)
    except UserError as exc:
        (mms_store / archive_name).unlink(missing_ok=True)
        kept = f"; {name}@{previous[-1]} still serves" if previous else ""
        raise DeployFailed(f"{name}@{version}: {exc}{kept}") from None
    content_type = CONTENT_TYPES.get(sample.suffix.lower(), "application/octet-stream")
    try:
        answer = predict(inference_url, new, sample.read_bytes(), content_type=content_type)
        if not answer:
            raise ValueError("an empty answer")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        try:
            unregister(management_url, new)
        finally:
            (mms_store / archive_name).unlink(missing_ok=True)
        kept = f"; {name}@{previous[-1]} still serves" if previous else ""
        raise DeployFailed(f"{name}@{version}: smoke prediction on {sample.name} failed ({exc}){kept}") from None
    for old in previous:
        unregister(management_url, served_name(name, old))
    return {
        "name": name,
        "version": version,
        "served_as": new,
        "url": f"{inference_url}/predictions/{new}",
        "replaced": previous,
        "smoke": answer,
    }


def rollback_target(repo: Path, name: str, management_url: str) -> tuple[str, str]:
    """(deployed version, the release before it) for ``--rollback``."""
    import gto.api

    from insectml.release.release import git_root

    current = deployed_versions(management_url, name)
    if not current:
        raise ConfigError(f"nothing named {name} is deployed on {management_url}; nothing to roll back")
    versions = sorted((v["version"] for v in gto.api.show(str(git_root(repo)), name)), key=semver)
    older = [v for v in versions if semver(v) < semver(current[-1])]
    if not older:
        raise ConfigError(f"{name}@{current[-1]} is the first release; there is nothing to roll back to")
    return current[-1], older[-1]
