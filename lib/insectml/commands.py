"""General subcommands: demo data, parameter validation, versions, results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cli import existing_file


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="demo data")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = data_sub.add_parser(
        "demo",
        help="write the bundled demo data (deterministic)",
        description="Write the demo datasets into OUT (wingbeat: OUT/wingbeat). The same seed always "
        "produces byte-identical files, so DVC tracks one version.",
    )
    p.add_argument("--out", type=Path, default=Path("data"), help="data folder (default: data)")
    p.add_argument("--wingbeat-per-class", type=int, default=120, help="recordings per species (default: 120)")
    p.add_argument(
        "--families",
        default="wingbeat,detector,fewshot",
        help="which demo sets to write, comma-separated (default: wingbeat,detector,fewshot)",
    )
    p.add_argument("--detector-images", type=int, default=240, help="box-labelled detector images (default: 240)")
    p.add_argument(
        "--fewshot-body-plans",
        type=int,
        default=0,
        metavar="N",
        help="few-shot: only the first N body plans, 6 classes each (default: 0, all 54)",
    )
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
    p.add_argument("--task", required=True, help="the swept family (wingbeat, fewshot)")
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


def _demo(args: argparse.Namespace) -> int:
    from insectml.errors import ConfigError

    families = {f.strip() for f in args.families.split(",") if f.strip()}
    unknown = families - {"wingbeat", "detector", "fewshot"}
    if unknown:
        raise ConfigError(f"--families: unknown {', '.join(sorted(unknown))} (choose from wingbeat, detector, fewshot)")
    if "wingbeat" in families:
        from insectml.data.demo import write_wingbeat_demo

        write_wingbeat_demo(args.out / "wingbeat", per_class=args.wingbeat_per_class, seed=args.seed)
    if "detector" in families:
        from insectml.data.detector_demo import write_detector_demo

        write_detector_demo(
            args.out / "detector",
            n_box_images=args.detector_images,
            n_species_images=args.detector_images // 2,
            seed=args.seed,
        )
    if "fewshot" in families:
        from insectml.data.fewshot_demo import write_fewshot_demo

        write_fewshot_demo(args.out / "fewshot", seed=args.seed, body_plan_limit=args.fewshot_body_plans)
    print(args.out)
    return 0


def _sweep_plan(args: argparse.Namespace) -> int:
    from insectml.errors import UserError
    from insectml.sweep import plan

    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise UserError(f"--params is not JSON ({exc.msg})") from None
    print(json.dumps(plan(args.sweep, args.schema, params)))
    return 0


def _sweep_select(args: argparse.Namespace) -> int:
    from insectml.sweep import select

    configs = json.loads(args.plan.read_text())["configs"]
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


def _versions(args: argparse.Namespace) -> int:
    from insectml.lineage import package_versions

    versions = {k: v for k, v in package_versions().items() if v}
    lines = [f'"{args.process}":'] + [f"    {k}: {v}" for k, v in versions.items()]
    print("\n".join(lines))
    return 0


def _results(args: argparse.Namespace) -> int:
    from insectml.errors import InputFileError

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
        m = json.loads(path.read_text())
        if "accuracy" in m:
            print(
                f"{path.parent.name}: {m.get('family')} {m.get('model')} {m.get('split')} "
                f"accuracy={m['accuracy']:.3f} macro_f1={m['macro_f1']:.3f}"
            )
        elif "map_50" in m:
            print(
                f"{path.parent.name}: detector {m.get('model')} {m.get('split')} mAP={m['map']:.3f} mAP@.5={m['map_50']:.3f}"
            )
        elif m.get("family") == "fewshot":
            one = m["episodes_5way_1shot"]["mean"]
            print(
                f"fewshot: {m.get('backbone')} {m.get('loss')} novel test classes={m['novel_classes']} "
                f"top1={m['top1']:.3f} top5={m['top5']:.3f} 5-way-1-shot={one if one is None else round(one, 3)}"
            )
    return 0
