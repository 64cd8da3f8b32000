"""``insectml weights import|list|show``: pretrained checkpoints brought in once, offline."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from insectml.cliargs import existing_file
from insectml.errors import ConfigError, InputFileError
from insectml.weights.importers import SOURCES

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser(
        "weights",
        help="import pretrained weights (timm, torchvision, open_clip) into weights/NAME, list them",
        description="Pretrained weights live in weights/NAME/ (weights.safetensors and manifest.json) and are "
        "named by NAME in every --*_weights param.",
    )
    wsub = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    p = wsub.add_parser(
        "import",
        help="check a downloaded checkpoint loads into its architecture, store it as weights/NAME",
        description="Check that FILE, a checkpoint as its publisher ships it, loads into the architecture it "
        "is for (only a class head that does not fit is allowed; the manifest lists it as head_mismatch), then "
        "store it as ROOT/weights/NAME/weights.safetensors with a manifest.json (architecture, source file and "
        "sha256, licence, input size, mean and std). timm: model.safetensors or pytorch_model.bin; the "
        "architecture from --model or the config.json beside it. torchvision: a .pth state dict; --model is "
        "the torchvision.models.get_model name (classifiers and detectors). open_clip (BioCLIP…): "
        "open_clip_pytorch_model.bin or .safetensors; the architecture from --model (ViT-B-16 for BioCLIP) or "
        "the open_clip_config.json beside it. In a DVC repository the folder is then 'dvc add'ed.",
    )
    p.add_argument("source", choices=SOURCES, help="the library the checkpoint is for")
    p.add_argument("file", type=existing_file, help="the checkpoint file")
    p.add_argument("--name", required=True, help="the weights' name: letters, digits, '.', '_', '-'")
    p.add_argument("--model", help="the architecture's name in its library (default: from the config beside FILE)")
    p.add_argument(
        "--licence",
        help="the weights' licence (default: from a LICENSE, LICENSE.txt or README.md 'license:' beside FILE)",
    )
    p.add_argument("--root", type=Path, default=Path("."), help="the project folder holding weights/ (default: .)")
    p.add_argument("--force", action="store_true", help="replace existing weights of that name")
    p.add_argument("--no-dvc", action="store_true", help="do not 'dvc add' the folder in a DVC repository")
    p.set_defaults(func=_import)

    p = wsub.add_parser("list", help="the weights imported into ROOT/weights: name, kind, model, size, licence")
    p.add_argument("--root", type=Path, default=Path("."), help="the project folder holding weights/ (default: .)")
    p.set_defaults(func=_list)

    p = wsub.add_parser("show", help="print the manifest of imported weights as JSON")
    p.add_argument("name", help="the weights' NAME (looked up as --*_weights are) or folder")
    p.add_argument("--root", type=Path, help="look only in ROOT/weights")
    p.set_defaults(func=_show)


def _import(args: argparse.Namespace) -> int:
    from insectml.weights.importers import ImportConfig, import_weights

    cfg = ImportConfig(
        source=args.source,
        file=args.file,
        name=args.name,
        model=args.model,
        licence=args.licence,
        root=args.root,
        force=args.force,
        dvc=not args.no_dvc,
    )
    print(import_weights(cfg))
    return 0


def _params(count: int | None) -> str:
    return "?" if count is None else f"{count / 1e6:.1f}M"


def _list(args: argparse.Namespace) -> int:
    from insectml.weights.importers import list_weights

    manifests = list_weights(args.root)
    if not manifests:
        log.info("no weights imported in %s", args.root / "weights")
    for m in manifests:
        arch = m.get("architecture", {})
        row = (m.get("name"), arch.get("kind"), arch.get("model") or "custom", _params(m.get("parameters")))
        print("\t".join(str(x) for x in (*row, m.get("sha256", "")[:12], m.get("licence", ""))))
    return 0


def _show(args: argparse.Namespace) -> int:
    from insectml.weights import store

    if args.root is not None:
        folder = store.find(args.root / store.WEIGHTS_DIR / args.name)
    else:
        folder = store.find(args.name)
    if folder is None or not (folder / store.MANIFEST).is_file():
        where = args.root / store.WEIGHTS_DIR if args.root else ", ".join(map(str, store.search_dirs()))
        raise ConfigError(f"no imported weights named {args.name!r} in {where}")
    try:
        manifest = json.loads((folder / store.MANIFEST).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(folder / store.MANIFEST, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    print(json.dumps(manifest, indent=2))
    return 0
