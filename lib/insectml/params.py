"""Pipeline parameter validation and help, from ``nextflow_schema.json``.

Nextflow plugins (nf-schema) cannot be downloaded on an offline cluster, so the
entry workflow calls ``insectml params validate`` before anything runs. The schema
is JSON Schema with nf-core's layout (``$defs`` groups, ``allOf``), plus:
``"exists": true`` on ``format: file-path|directory-path`` (and on ``format: path``
with ``"x-weights": true``: a weights file, folder or imported NAME, see
:mod:`insectml.weights.store`) and ``"x-choices"`` for comma-separated lists whose items
must come from a set.
"""

from __future__ import annotations

import json
from pathlib import Path

from insectml.errors import InputFileError, UserError
from insectml.runparams import FAMILY_NAMES, GENERAL


class ParamsError(UserError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def load_schema(path: Path) -> dict:
    """The pipeline's schema: a JSON object, else one :class:`InputFileError`."""
    if not path.is_file():
        raise InputFileError(path, "schema file not found")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputFileError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    groups = schema.get("$defs", {}) if isinstance(schema, dict) else None
    if not isinstance(groups, dict) or not all(isinstance(g, dict) for g in groups.values()):
        raise InputFileError(path, "not a JSON schema object (with a '$defs' object of parameter groups)")
    return schema


def flat_properties(schema: dict) -> dict[str, dict]:
    props = dict(schema.get("properties", {}))
    for group in schema.get("$defs", {}).values():
        props.update(group.get("properties", {}))
    return props


def validate_params(schema_path: Path, params_json: str) -> None:
    """Raise :class:`ParamsError` with one line per problem: type, range, choice,
    missing file or folder, unknown parameter.

    Files and folders are looked for only for the families ``--task`` runs: a family's
    params group (a ``$defs`` entry named after it) is type-checked always, but its
    demo-data defaults need not exist when the family is not run."""
    import jsonschema

    schema = load_schema(schema_path)
    try:
        params = json.loads(params_json)
    except json.JSONDecodeError as exc:
        raise UserError(f"--params is not JSON ({exc.msg})") from None
    if not isinstance(params, dict):
        raise UserError(f"--params is not a JSON object of params (got a {type(params).__name__})")
    props = flat_properties(schema)
    flat = {"type": "object", "properties": props}
    problems = []
    # Nextflow only passes params that have a value; null means "not set".
    present = {k: v for k, v in params.items() if v is not None and k in props}
    validator = jsonschema.Draft202012Validator(flat)
    for error in sorted(validator.iter_errors(present), key=lambda e: list(e.path)):
        name = error.path[0] if error.path else "params"
        problems.append(f"--{name}: {_message(error)}")
    idle = _idle_family_params(schema, present.get("task"))
    for name, value in present.items():
        spec = props[name]
        if spec.get("exists") and isinstance(value, str) and name not in idle:
            path = Path(value)
            kind = spec.get("format")
            if spec.get("x-weights"):
                problem = _weights_problem(value, schema_path)
                if problem:
                    problems.append(f"--{name}: {problem}")
            elif kind == "file-path" and not path.is_file():
                problems.append(f"--{name}: file not found: {value}")
            elif kind == "directory-path" and not path.is_dir():
                problems.append(f"--{name}: folder not found: {value}")
        if "x-choices" in spec and isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
            bad = [v for v in items if v not in spec["x-choices"]]
            if bad or not items:
                problems.append(f"--{name}: {', '.join(bad) or 'empty'} not among {', '.join(spec['x-choices'])}")
    unknown = sorted(k for k in params if k not in props and not _nextflow_alias(k, props))
    problems += [f"--{k}: unknown parameter (see --help)" for k in unknown]
    problems += _active_learning_problems(present)
    if problems:
        raise ParamsError(problems)


def _active_learning_problems(present: dict) -> list[str]:
    """What makes ``--al_round`` unable to run: no pool, no family to select for, or the
    novelty strategy (distance to the few-shot gallery) for a family without a gallery."""
    if present.get("al_round") is not True:
        return []
    task = present.get("task", GENERAL.default("task"))
    running = [t.strip() for t in task.split(",") if t.strip() in FAMILY_NAMES] if isinstance(task, str) else []
    problems = []
    if not present.get("al_pool"):
        problems.append(
            "--al_round: needs --al_pool, the folder of unlabelled files (or prediction log) to select from"
        )
    if not running:
        problems.append(f"--al_round: --task {task} trains no model family to select with")
    without_gallery = [t for t in running if t != "fewshot"]
    if present.get("al_strategy") == "novelty" and without_gallery:
        problems.append(
            f"--al_strategy novelty: scores distance to the few-shot gallery, which {', '.join(without_gallery)} "
            "has none; use uncertainty, diversity or hybrid"
        )
    return problems


def _weights_problem(value: str, schema_path: Path) -> str | None:
    """Why ``value`` names no weights, or None. Besides the store's folders, a NAME is looked
    for in the ``weights/`` folder next to the schema: the project's, which Nextflow's tasks
    search too, while this check runs in the launch folder."""
    from insectml.weights import store

    if not value:  # the modules pass no --weights for an empty value
        return None
    found = store.find(value)
    if found is not None and found.is_dir() and not (found / store.MANIFEST).is_file():
        return f"folder {value} holds no {store.MANIFEST} (made by 'insectml weights import')"
    if found is not None:
        return None
    project = schema_path.resolve().parent / store.WEIGHTS_DIR
    if store.looks_like_name(value) and (project / value / store.MANIFEST).is_file():
        return None
    where = ", ".join(dict.fromkeys(str(d) for d in [*store.search_dirs(), project]))
    return f"no weights file, folder or imported NAME {value!r} (looked in {where})"


def _idle_family_params(schema: dict, task: object) -> set[str]:
    """The params of the families that ``task`` (comma-separated family names) does not run."""
    families = set(flat_properties(schema).get("task", {}).get("x-choices", []))
    running = {t.strip() for t in task.split(",")} if isinstance(task, str) else families
    return {
        name
        for group_name, group in schema.get("$defs", {}).items()
        if group_name in families - running
        for name in group.get("properties", {})
    }


def _nextflow_alias(name: str, props: dict) -> bool:
    # Nextflow adds a camelCase twin for a --kebab-case param.
    return any(name == _camel(p) for p in props)


def _camel(name: str) -> str:
    head, *rest = name.replace("-", "_").split("_")
    return head + "".join(w.title() for w in rest)


def _message(error) -> str:
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "type":
        if error.instance is True and "string" in error.validator_value:
            name = error.path[0] if error.path else "param"
            return f"has no value (a value that starts with '-' goes after '=': --{name}='--...')"
        return f"{error.instance!r} is not of type {error.validator_value}"
    return error.message


def help_text(schema_path: Path) -> str:
    schema = load_schema(schema_path)
    lines = [schema.get("title", "parameters"), schema.get("description", ""), ""]
    groups = list(schema.get("$defs", {}).values()) or [schema]
    for group in groups:
        lines.append(group.get("title", "parameters"))
        for name, spec in group.get("properties", {}).items():
            default = spec.get("default")
            shown = "" if default is None else f" [default: {default}]"
            lines.append(f"  --{name:<28} {spec.get('description', '')}{shown}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
