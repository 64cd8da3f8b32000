"""General subcommands: demo data, parameter validation, versions, results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cliargs import add_option, existing_file
from insectml.families import FAMILIES


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="demo data")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = data_sub.add_parser(
        "demo",
        help="write the bundled demo data (deterministic)",
        description="Write the demo datasets into OUT (wingbeat: OUT/wingbeat, and the hard wingbeat set "
        "OUT/wingbeat_hard). The same seed always produces byte-identical files, so DVC tracks one version.",
    )
    p.add_argument("--out", type=Path, default=Path("data"), help="data folder (default: data)")
    names = ",".join(FAMILIES)
    p.add_argument("--families", default=names, help=f"which demo sets to write, comma-separated (default: {names})")
    for family in FAMILIES.values():
        add_option(p, family.demo_size, metavar="N")
        for demo in family.more_demos:
            add_option(p, demo.size, metavar="N", type=_count)
    p.add_argument("--seed", type=int, default=20240601, help="generator seed (default: 20240601)")
    p.set_defaults(func=_demo)

    params = sub.add_parser("params", help="pipeline parameters")
    params_sub = params.add_subparsers(dest="params_command", metavar="ACTION", required=True)
    p = params_sub.add_parser(
        "validate",
        help="check pipeline params against nextflow_schema.json",
        description="Validate the params of a Nextflow run (JSON) against the pipeline's schema; "
        "one line per problem, exit 2 if any.",
    )
    p.add_argument("--schema", type=existing_file, required=True, help="nextflow_schema.json")
    p.add_argument("--params", required=True, help="the run's params as JSON text")
    p.set_defaults(func=_params_validate)
    p = params_sub.add_parser("help", help="print every pipeline parameter with its default and help")
    p.add_argument("--schema", type=existing_file, required=True, help="nextflow_schema.json")
    p.set_defaults(func=_params_help)
    p = params_sub.add_parser(
        "generate",
        help="write nextflow_schema.json and the params.config files from the parameter declarations",
        description="Every pipeline parameter is declared once (lib/insectml/schema.py for the run-wide "
        "groups, lib/insectml/<family>/family.py for a family's); this writes the files derived from them. "
        "--check only lists the stale ones (exit 1), as the test does.",
    )
    p.add_argument("--root", type=Path, default=Path("."), help="the repository (default: .)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is stale")
    p.set_defaults(func=_params_generate)

    sweep = sub.add_parser("sweep", help="hyperparameter sweeps (--sweep conf/sweeps/<name>.yaml)")
    sweep_sub = sweep.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    p = sweep_sub.add_parser(
        "plan",
        help="check a sweep file and print its configurations as JSON",
        description="Expand a sweep file (grid or seeded random) into configurations; each is "
        "validated as a full set of pipeline params against the schema. One line and exit 2 on a problem.",
    )
    p.add_argument("--sweep", type=Path, required=True, help="the sweep file (YAML)")
    p.add_argument("--schema", type=existing_file, required=True, help="nextflow_schema.json")
    p.add_argument("--params", required=True, help="the run's params as JSON text")
    p.set_defaults(func=_sweep_plan)
    p = sweep_sub.add_parser(
        "select",
        help="table the trained configurations and pick the best by validation metric",
    )
    p.add_argument("--task", required=True, choices=list(FAMILIES), help="the swept family")
    p.add_argument("--plan", type=existing_file, required=True, help="the JSON printed by 'sweep plan'")
    p.add_argument("--models", type=Path, nargs="+", required=True, help="trained model folders")
    p.add_argument("--ids", nargs="+", required=True, help="the configuration id of each model folder, in order")
    p.add_argument("--out", type=Path, default=Path("sweep"), help="output folder (default: sweep)")
    p.set_defaults(func=_sweep_select)

    p = sub.add_parser("versions", help="versions.yml for a pipeline task (nf-core convention)")
    p.add_argument("--process", required=True, help="the Nextflow process name")
    p.set_defaults(func=_versions)

    p = sub.add_parser("results", help="say where a run's metrics, reports and archives are")
    p.add_argument("--outdir", type=Path, default=Path("results"), help="the run's --outdir (default: results)")
    p.set_defaults(func=_results)


def _count(value: str) -> int:
    """argparse type: a whole number, 0 or more."""
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value}: not a whole number >= 0")
    return int(value)


def _demo(args: argparse.Namespace) -> int:
    from insectml.errors import ConfigError

    families = {f.strip() for f in args.families.split(",") if f.strip()}
    unknown = families - set(FAMILIES)
    if unknown:
        raise ConfigError(f"--families: unknown {', '.join(sorted(unknown))} (choose from {', '.join(FAMILIES)})")
    for family in FAMILIES.values():
        if family.name in families:
            family.demo(args.out / family.name, getattr(args, family.demo_size.dest), args.seed)
            for demo in family.more_demos:
                if getattr(args, demo.size.dest):
                    demo.write(args.out / demo.folder, getattr(args, demo.size.dest), args.seed)
    print(args.out)
    return 0


def _sweep_plan(args: argparse.Namespace) -> int:
    from insectml.errors import UserError
    from insectml.sweep import plan

    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise UserError(f"--params is not JSON ({exc.msg})") from None
    if not isinstance(params, dict):
        raise UserError(f"--params is not a JSON object of params (got a {type(params).__name__})")
    print(json.dumps(plan(args.sweep, args.schema, params)))
    return 0


def _sweep_select(args: argparse.Namespace) -> int:
    from insectml.errors import InputFileError
    from insectml.modeldir import read_json
    from insectml.sweep import select

    configs = read_json(args.plan, "sweep plan (from 'insectml sweep plan')", keys=("configs",))["configs"]
    if not isinstance(configs, list) or not all(isinstance(c, dict) and {"id", "params"} <= c.keys() for c in configs):
        raise InputFileError(args.plan, "'configs' is not a list of {id, params} (from 'insectml sweep plan')")
    print(select(args.task, args.models, args.ids, configs, args.out))
    return 0


def _params_validate(args: argparse.Namespace) -> int:
    from insectml.params import validate_params

    validate_params(args.schema, args.params)
    return 0


def _params_help(args: argparse.Namespace) -> int:
    from insectml.params import help_text

    print(help_text(args.schema))
    return 0


def _params_generate(args: argparse.Namespace) -> int:
    from insectml import schema

    if args.check:
        stale = schema.stale(args.root)
        for path in stale:
            print(f"stale: {path} (run 'insectml params generate')")
        return 1 if stale else 0
    for path in schema.write(args.root):
        print(f"wrote {path}")
    return 0


def _versions(args: argparse.Namespace) -> int:
    from insectml.lineage import package_versions

    versions = {k: v for k, v in package_versions().items() if v}
    lines = [f'"{args.process}":'] + [f"    {k}: {v}" for k, v in versions.items()]
    print("\n".join(lines))
    return 0


def _results(args: argparse.Namespace) -> int:
    from insectml.errors import InputFileError
    from insectml.modeldir import read_json

    if not args.outdir.is_dir():
        raise InputFileError(args.outdir, "results folder not found")
    groups = {
        "metrics": sorted(args.outdir.rglob("metrics.json")),
        "reports": sorted(args.outdir.rglob("report.html")),
        "archives": sorted(args.outdir.rglob("*.mar")),
        "pipeline info": sorted((args.outdir / "pipeline_info").glob("execution_report*.html")),
    }
    for name, paths in groups.items():
        print(f"{name}:")
        for path in paths or []:
            print(f"  {path}")
        if not paths:
            print("  (none)")
    for path in groups["metrics"]:
        m = read_json(path, "metrics file")
        try:
            line = _metrics_line(path, m)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(path, f"metrics file without the value 'results' shows ({exc!r})") from None
        if line:
            print(line)
    return 0


def _metrics_line(path: Path, m: dict) -> str | None:
    """The line 'results' prints for a family's metrics.json; None for another file of that name."""
    if "accuracy" in m:
        return (
            f"{path.parent.name}: {m.get('family')} {m.get('model')} {m.get('split')} "
            f"accuracy={m['accuracy']:.3f} macro_f1={m['macro_f1']:.3f}"
        )
    if "map_50" in m:
        return f"{path.parent.name}: detector {m.get('model')} {m.get('split')} mAP={m['map']:.3f} mAP@.5={m['map_50']:.3f}"
    if m.get("family") == "fewshot":
        one = m["episodes_5way_1shot"]["mean"]
        return (
            f"fewshot: {m.get('backbone')} {m.get('loss')} novel test classes={m['novel_classes']} "
            f"top1={m['top1']:.3f} top5={m['top5']:.3f} 5-way-1-shot={one if one is None else round(one, 3)}"
        )
    return None
