"""``insectml release``, ``insectml models``, ``insectml promote``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from insectml.cliargs import existing_dir


def default_store() -> str:
    return os.environ.get("INSECTML_MODEL_STORE", "model-store")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "release",
        help="release a trained model: quality gate, model card, git tag, model store",
        description="Release the model in a family's results folder as NAME: compare it with the latest "
        "released version (quality gate), write a model card, tag the repository in GTO's convention "
        "(NAME@vX.Y.Z: major for a new label set, minor for a better headline metric, patch otherwise), "
        "optionally promote it (NAME#STAGE#N), and copy the archive, card and plots to the model store. "
        "Refuses, with one line and exit 2, on a dirty tree, a model without lineage, a failed gate (worse "
        "than the latest release, a changed label set, or not beating its baseline) or an existing tag.",
    )
    p.add_argument("results", type=existing_dir, help="a family's results folder, e.g. results/wingbeat")
    p.add_argument("--name", required=True, help="model name in tags and the store, e.g. wingbeat")
    p.add_argument("--repo", type=Path, default=Path("."), help="the git repository to tag (default: .)")
    p.add_argument(
        "--store",
        default=default_store(),
        help="model store: a folder or an fsspec URL (default: $INSECTML_MODEL_STORE or model-store)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="how far (absolute) a headline metric may fall below the latest release (default: 0)",
    )
    p.add_argument("--major", action="store_true", help="allow a changed label set (a major release)")
    p.add_argument(
        "--allow-below-baseline",
        action="store_true",
        help="release a model whose evaluation says it does not beat its baseline (the model card records it)",
    )
    p.add_argument("--stage", help="also promote the release to this stage (e.g. production)")
    p.add_argument("--ref", default="HEAD", help="the commit to tag (default: HEAD)")
    p.set_defaults(func=_release)

    p = sub.add_parser("models", help="list released models: versions, stages, headline metrics")
    p.add_argument("--repo", type=Path, default=Path("."), help="the git repository (default: .)")
    p.add_argument("--store", default=default_store(), help="model store for the metrics (default: as release)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--latest", metavar="NAME", help="print only the latest released version of NAME (vX.Y.Z)")
    p.set_defaults(func=_models)

    p = sub.add_parser(
        "deploy",
        help="serve a released version on a running MMS, smoke-test it, retire the old one",
        description="Copy NAME@VERSION's archive from the model store into the server's model store, register "
        "it through the management API (initial_workers, synchronous) as NAME_vX_Y_Z, POST --sample to it, "
        "then unregister the version it replaces. If registration or the smoke prediction fails, the new "
        "version is removed, the previous one keeps serving, and the command exits 2. --rollback deploys the "
        "release before the one being served.",
    )
    p.add_argument("model", help="NAME@VERSION (e.g. wingbeat@v1.2.0), or NAME with --rollback")
    p.add_argument("--mms", default="http://127.0.0.1:8081", help="management API (default: http://127.0.0.1:8081)")
    p.add_argument(
        "--inference", default="http://127.0.0.1:8080", help="inference API for the smoke test (default: :8080)"
    )
    p.add_argument("--mms-store", type=Path, required=True, help="the running server's --model-store folder")
    p.add_argument(
        "--store", default=default_store(), help="model store (default: $INSECTML_MODEL_STORE or model-store)"
    )
    p.add_argument(
        "--sample", type=Path, required=True, help="a request body for the smoke prediction (.wav, .png, .jpg)"
    )
    p.add_argument("--workers", type=int, default=1, help="initial workers (default: 1)")
    p.add_argument("--rollback", action="store_true", help="deploy the release before the one being served")
    p.add_argument("--repo", type=Path, default=Path("."), help="the git repository with the release tags (default: .)")
    p.set_defaults(func=_deploy)

    p = sub.add_parser("promote", help="assign a released version to a stage (NAME#STAGE#N tag)")
    p.add_argument("model", help="NAME@VERSION, e.g. wingbeat@v1.2.0")
    p.add_argument("--stage", required=True, help="stage, e.g. production")
    p.add_argument("--repo", type=Path, default=Path("."), help="the git repository (default: .)")
    p.set_defaults(func=_promote)


def split_model(text: str) -> tuple[str, str]:
    from insectml.errors import ConfigError

    name, _, version = text.partition("@")
    if not name or not version.startswith("v"):
        raise ConfigError(f"{text}: expected NAME@vX.Y.Z, e.g. wingbeat@v1.2.0")
    return name, version


def _release(args: argparse.Namespace) -> int:
    from insectml.release.release import release

    done = release(
        args.results,
        args.name,
        args.repo,
        args.store,
        args.tolerance,
        args.major,
        args.stage,
        args.ref,
        allow_below_baseline=args.allow_below_baseline,
    )
    print(json.dumps(done))
    return 0


def _models(args: argparse.Namespace) -> int:
    from insectml.release.release import git_root, latest_version, list_models

    if args.latest:
        from insectml.errors import ConfigError

        version = latest_version(git_root(args.repo), args.latest)
        if version is None:
            raise ConfigError(f"{args.latest}: no released version in {git_root(args.repo)}")
        print(version)
        return 0
    rows = list_models(args.repo, args.store)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no released models")
        return 0
    print(f"{'model':<14} {'version':<10} {'commit':<9} {'stages':<16} headline")
    for r in rows:
        headline = ", ".join(f"{k} {v:.3f}" for k, v in r["headline"].items())
        print(f"{r['name']:<14} {r['version']:<10} {r['commit']:<9} {','.join(r['stages']) or '-':<16} {headline}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from insectml.release.release import promote

    name, version = split_model(args.model)
    print(promote(args.repo, name, version, args.stage))
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from insectml.release.deploy import deploy, rollback_target

    if args.rollback:
        name = args.model.partition("@")[0]
        current, version = rollback_target(args.repo, name, args.mms)
        print(f"rolling back {name}: {current} -> {version}")
    else:
        name, version = split_model(args.model)
    done = deploy(name, version, args.mms, args.inference, args.store, args.mms_store, args.sample, args.workers)
    print(json.dumps({k: v for k, v in done.items() if k != "smoke"}))
    return 0
