"""``insectml modules list|install|update|check``: share the library's Nextflow modules,
workflows and configuration with a project, versioned in its ``modules.json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", type=Path, default=Path("."), help="the project folder (default: .)")
    p.add_argument(
        "--library",
        metavar="PATH|URL",
        help="the insectml library: a checkout folder or a git URL (default: $INSECTML_LIBRARY, or the "
        "checkout this insectml runs from)",
    )
    p.add_argument("--ref", help="with a git URL: the tag or branch to take components from (e.g. v0.2.0)")


def register(sub: argparse._SubParsersAction) -> None:
    modules = sub.add_parser(
        "modules",
        help="install and update the library's modules, workflows and configuration in a project",
        description="Copy components of the insectml library into a project and record each one (library "
        "version, commit, sha256 of every file) in the project's modules.json. Components: modules "
        "(<family>/<step>), subworkflows (sweep_best), workflows (<family>: the workflow, its conf/<family>/ "
        "configuration, its params group and the modules and subworkflows it includes) and 'base' "
        "(conf/*.config: resources, Slurm, GPU and test profiles, publishing, run reports; the pipeline "
        "utilities in subworkflows/local/utils_*).",
    )
    msub = modules.add_subparsers(dest="modules_command", metavar="ACTION", required=True)

    p = msub.add_parser("list", help="the library's components, and which the project has installed")
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_list)

    p = msub.add_parser("install", help="copy components (and what they require) into the project")
    _common(p)
    p.add_argument("names", nargs="+", metavar="NAME", help="components, e.g. base wingbeat, or wingbeat/train")
    p.add_argument("--force", action="store_true", help="replace project files that differ from the library's")
    p.set_defaults(func=_install)

    p = msub.add_parser("update", help="bring installed components to the library's version")
    _common(p)
    p.add_argument("names", nargs="*", metavar="NAME", help="components to update (default: every installed one)")
    p.add_argument("--force", action="store_true", help="replace files edited in the project")
    p.set_defaults(func=_update)

    p = msub.add_parser(
        "check",
        help="report components edited in the project or out of date with the library (exit 1 if any)",
    )
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_check)


def _open(args: argparse.Namespace):
    from insectml.project.components import Project, open_library

    return open_library(args.library, args.ref), Project(args.project)


def _list(args: argparse.Namespace) -> int:
    library, project = _open(args)
    rows = [
        {
            "name": c.name,
            "kind": c.kind,
            "files": len(c.files),
            "requires": list(c.requires),
            "installed": project.installed.get(c.name, {}).get("version"),
        }
        for c in library.components.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"library {library.source} (insectml {library.version}, {(library.commit or 'no git')[:8]})")
    print(f"{'component':<22} {'kind':<11} {'files':>5}  {'installed':<10} requires")
    for r in rows:
        print(
            f"{r['name']:<22} {r['kind']:<11} {r['files']:>5}  {r['installed'] or '-':<10} "
            f"{', '.join(r['requires']) or '-'}"
        )
    return 0


def _install(args: argparse.Namespace) -> int:
    from insectml.project.components import install

    library, project = _open(args)
    for name in args.names:
        library.get(name)  # every name checked before anything is copied
    changed = [c for name in args.names for c in install(library, project, name, force=args.force)]
    print(json.dumps({"installed": changed, "version": library.version, "commit": library.commit}))
    return 0


def _update(args: argparse.Namespace) -> int:
    from insectml.errors import ConfigError
    from insectml.project.components import install

    library, project = _open(args)
    names = args.names or sorted(project.installed)
    for name in names:
        if name not in project.installed:
            raise ConfigError(f"{name}: not installed in {project.root} (use 'insectml modules install {name}')")
        library.get(name)
    changed = [c for name in names for c in install(library, project, name, force=args.force, update=True)]
    print(json.dumps({"updated": changed, "version": library.version, "commit": library.commit}))
    return 0


def _check(args: argparse.Namespace) -> int:
    from insectml.project.components import check

    library, project = _open(args)
    rows = check(library, project)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        if not rows:
            print(f"{project.root}: no components installed (modules.json)")
        for r in rows:
            print(f"{r.name:<22} {r.state:<9} {r.detail}")
    return 0 if all(r.state == "ok" for r in rows) else 1
