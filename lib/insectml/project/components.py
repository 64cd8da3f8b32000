"""The library's installable components, and a project's record of what it installed.

The library (a checkout of this repository) offers four kinds of component:

- **module** ``<family>/<step>``: ``modules/<family>/<step>/`` (one Nextflow process);
- **subworkflow** ``<name>``: ``subworkflows/local/<name>/`` (wiring shared by
  workflows, e.g. ``sweep_best``) and, as requirements, the modules it includes;
- **workflow** ``<family>``: ``workflows/<family>.nf``, its configuration
  ``conf/<family>/*.config``, its example sweeps ``conf/sweeps/<family>_*.yaml``, the
  params group ``<family>`` of ``nextflow_schema.json``, and (as requirements) every
  module and subworkflow it includes;
- **base** ``base``: ``conf/*.config`` (resources, the profiles, Slurm, GPU, publishing,
  run reports), the pipeline utilities ``subworkflows/local/utils_*/`` (params
  validation and help, the sweep plan, input channels, completion) that a project's
  ``train_evaluate.nf`` includes, and the params groups ``general`` and ``cluster``.

A project records each installed component in ``modules.json`` (the idea of nf-core's
module tooling): the library version and commit it came from and the sha256 of each file,
so that ``check`` can tell a file edited in the project from one the library has changed
since. The project's ``nextflow_schema.json`` is rebuilt from the library's schema groups
of the installed components plus the project's own groups.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from insectml.data.manifest import read_json
from insectml.errors import ConfigError, InputFileError, UserError
from insectml.fileio import write_json_atomic

MODULES_JSON = "modules.json"
SCHEMA = "nextflow_schema.json"
BASE_GROUPS = ("general", "cluster")
# include { X } from '../modules/<family>/<step>/main' or '../subworkflows/local/<name>/main'
# (from a subworkflow: '../../../modules/…'); group 1 is the kind, group 2 the component name.
_INCLUDE = re.compile(
    r"""^include\s*\{[^}]*\}\s*from\s*['"](?:\.\./)+(modules|subworkflows/local)/([\w/]+)/main['"]""", re.MULTILINE
)
UTILS = "utils_"  # subworkflows/local/utils_*: pipeline utilities, part of 'base'


def _requires(script: Path) -> tuple[str, ...]:
    """The components a Nextflow script includes, in order of their include lines."""
    return tuple(dict.fromkeys(name for _, name in _INCLUDE.findall(script.read_text())))


@dataclass(frozen=True)
class Component:
    name: str
    kind: str  # module, subworkflow, workflow, base
    files: tuple[str, ...]  # paths relative to the library (and the project) root
    requires: tuple[str, ...] = ()
    schema_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Status:
    name: str
    state: str  # ok, edited, outdated, missing, unknown
    detail: str = ""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksum(file_sums: dict[str, str]) -> str:
    """One sha256 over a component's files (name and content), as recorded in modules.json."""
    text = "\n".join(f"{name} {file_sums[name]}" for name in sorted(file_sums))
    return hashlib.sha256(text.encode()).hexdigest()


class Library:
    """A checkout of the insectml library: its components, version and commit."""

    def __init__(self, root: Path, source: str | None = None) -> None:
        self.root = root.resolve()
        if not (self.root / "modules").is_dir() or not (self.root / "workflows").is_dir():
            raise ConfigError(f"--library {root}: not an insectml library checkout (no modules/ and workflows/)")
        self.source = source or str(self.root)
        init = self.root / "lib" / "insectml" / "__init__.py"
        found = re.search(r'__version__\s*=\s*"([^"]+)"', init.read_text()) if init.is_file() else None
        self.version = found.group(1) if found else "unknown"
        done = subprocess.run(["git", "-C", str(self.root), "rev-parse", "HEAD"], capture_output=True, text=True)
        self.commit = done.stdout.strip() if done.returncode == 0 else None
        self.components = self._discover()

    def _discover(self) -> dict[str, Component]:
        found: dict[str, Component] = {}
        for main in sorted((self.root / "modules").glob("*/*/main.nf")):
            folder = main.parent
            name = folder.relative_to(self.root / "modules").as_posix()
            files = tuple(p.relative_to(self.root).as_posix() for p in sorted(folder.rglob("*")) if p.is_file())
            found[name] = Component(name, "module", files)
        for main in sorted((self.root / "subworkflows" / "local").glob("*/main.nf")):
            folder = main.parent
            if folder.name.startswith(UTILS):
                continue
            files = tuple(p.relative_to(self.root).as_posix() for p in sorted(folder.rglob("*")) if p.is_file())
            found[folder.name] = Component(folder.name, "subworkflow", files, _requires(main))
        for wf in sorted((self.root / "workflows").glob("*.nf")):
            family = wf.stem
            files = [wf.relative_to(self.root).as_posix()]
            files += [p.relative_to(self.root).as_posix() for p in sorted((self.root / "conf" / family).glob("*"))]
            files += [p.relative_to(self.root).as_posix() for p in sorted(self.root.glob(f"conf/sweeps/{family}_*"))]
            files += [p.relative_to(self.root).as_posix() for p in sorted(self.root.glob(f"notebooks/{family}_*.py"))]
            found[family] = Component(family, "workflow", tuple(files), _requires(wf), (family,))
        base = [p.relative_to(self.root).as_posix() for p in sorted((self.root / "conf").glob("*.config"))]
        for folder in sorted((self.root / "subworkflows" / "local").glob(f"{UTILS}*")):
            base += [p.relative_to(self.root).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
        base += [p.relative_to(self.root).as_posix() for p in sorted(self.root.glob("notebooks/jupytext.toml"))]
        base = tuple(base)
        found["base"] = Component("base", "base", base, (), BASE_GROUPS)
        return found

    def get(self, name: str) -> Component:
        if name not in self.components:
            raise ConfigError(f"{name}: no such component in the library (see 'insectml modules list')")
        return self.components[name]

    def closure(self, name: str) -> list[Component]:
        """``name`` and everything it requires, requirements first."""
        order: list[Component] = []

        def visit(n: str) -> None:
            c = self.get(n)
            for r in c.requires:
                visit(r)
            if c not in order:
                order.append(c)

        visit(name)
        return order

    def file_sums(self, component: Component) -> dict[str, str]:
        return {f: sha256(self.root / f) for f in component.files}

    def schema(self) -> dict:
        return json.loads((self.root / SCHEMA).read_text())


def open_library(spec: str | None, ref: str | None = None) -> Library:
    """The library at ``spec``: a folder, a git URL (cloned, at ``ref``), or by default
    ``$INSECTML_LIBRARY`` or the checkout this package is imported from."""
    spec = spec or os.environ.get("INSECTML_LIBRARY")
    if spec and ("://" in spec or spec.endswith(".git") or ref):
        target = Path(tempfile.mkdtemp(prefix="insectml-library-"))
        atexit.register(shutil.rmtree, target, True)  # the clone is read, then dropped
        cmd = ["git", "clone", "-q", "--depth", "1", *(["--branch", ref] if ref else []), spec, str(target)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise ConfigError(f"--library {spec}: git clone failed: {done.stderr.strip().splitlines()[-1:]}")
        return Library(target, source=f"{spec}@{ref}" if ref else spec)
    if spec:
        return Library(Path(spec))
    here = Path(__file__).resolve().parents[3]
    if (here / "modules").is_dir() and (here / "workflows").is_dir():
        return Library(here)
    raise ConfigError(
        "no insectml library checkout found: pass --library PATH or URL (or set INSECTML_LIBRARY); an "
        "insectml installed from a wheel does not carry the Nextflow modules"
    )


class Project:
    """A project folder and its ``modules.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise InputFileError(root, "project folder not found")
        self.path = self.root / MODULES_JSON
        if self.path.is_file():
            try:
                self.record = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InputFileError(self.path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
            except UnicodeDecodeError:
                raise InputFileError(self.path, "not a UTF-8 text file") from None
            if not isinstance(self.record, dict) or not isinstance(self.record.get("components"), dict):
                raise InputFileError(self.path, "no 'components' object; is this an insectml modules.json?")
            for name, entry in self.record["components"].items():
                self._check_entry(name, entry)
        else:
            self.record = {"library": {}, "components": {}}

    def _check_entry(self, name: str, entry: object) -> None:
        """One line naming ``modules.json`` and the component when its entry lacks a field
        the commands read, or lists a file outside the project: the files are read and
        deleted (when the library drops them), so a path must not lead elsewhere."""
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
            raise InputFileError(self.path, f"component {name!r}: no 'files' object")
        missing = [k for k in ("kind", "version", "checksum") if k not in entry]
        if missing:
            raise InputFileError(self.path, f"component {name!r}: no {', '.join(repr(k) for k in missing)}")
        for f in entry["files"]:
            if not self.inside(f):
                raise InputFileError(self.path, f"component {name!r}: file {f!r} is not inside the project")

    def inside(self, relative: str) -> bool:
        """Whether ``relative`` (a path from modules.json) names a file inside the project,
        symbolic links resolved."""
        if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
            return False
        resolved = (self.root / relative).resolve()
        return resolved != self.root and resolved.is_relative_to(self.root)

    @property
    def installed(self) -> dict[str, dict]:
        return self.record["components"]

    def save(self) -> None:
        write_json_atomic(self.path, self.record, sort_keys=True)

    def current_sums(self, entry: dict) -> dict[str, str | None]:
        return {f: (sha256(self.root / f) if (self.root / f).is_file() else None) for f in entry["files"]}


def _refuse_conflicts(library: Library, project: Project, component: Component) -> None:
    for f in component.files:
        src, dest = library.root / f, project.root / f
        if dest.is_file() and sha256(dest) != sha256(src):
            raise UserError(
                f"{dest}: exists and differs from the library's {component.name}; use --force to replace it"
            )


def _copy(library: Library, project: Project, component: Component) -> None:
    for f in component.files:
        dest = project.root / f
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library.root / f, dest)
    old = project.installed.get(component.name, {}).get("files", {})
    for f in set(old) - set(component.files):  # the library dropped it
        (project.root / f).unlink(missing_ok=True)
    sums = library.file_sums(component)
    project.installed[component.name] = {
        "kind": component.kind,
        "version": library.version,
        "commit": library.commit,
        "checksum": checksum(sums),
        "files": sums,
        "requires": list(component.requires),
    }


def build_schema(library: Library, project: Project) -> dict:
    """The project's schema: the library's groups of the installed components, then the
    project's own groups (those the library does not define), kept as they are."""
    lib_schema = library.schema()
    path = project.root / SCHEMA
    own = read_json(path, "the project's schema") if path.is_file() else {}
    installed = [library.components[c] for c in project.installed if c in library.components]
    groups = {g for c in installed for g in c.schema_groups}
    groups = [g for g in [*BASE_GROUPS, *sorted(groups - set(BASE_GROUPS))] if g in groups]
    defs = {g: json.loads(json.dumps(lib_schema["$defs"][g])) for g in groups}
    families = [c for c, e in project.installed.items() if e["kind"] == "workflow"]
    task = defs.get("general", {}).get("properties", {}).get("task")
    if task and families:
        task["x-choices"] = sorted(families)
        task["default"] = sorted(families)[0]
        task["description"] = f"model families to run, comma-separated: {', '.join(sorted(families))}"
    for name, group in own.get("$defs", {}).items():
        if name not in lib_schema["$defs"]:
            defs[name] = group
    return {
        "$schema": lib_schema["$schema"],
        "title": own.get("title", f"{project.root.name} pipeline parameters"),
        "description": own.get("description", lib_schema.get("description", "")),
        "type": "object",
        "$defs": defs,
        "allOf": [{"$ref": f"#/$defs/{g}"} for g in defs],
    }


def install(library: Library, project: Project, name: str, force: bool = False, update: bool = False) -> list[str]:
    """Install ``name`` and what it requires (or, with ``update``, bring them to the
    library's version); return the names of the components that changed. Every refusal
    (a differing project file, a local edit) comes before anything is copied."""
    plan = []
    for component in library.closure(name):
        entry = project.installed.get(component.name)
        if entry is None:
            if not force:
                _refuse_conflicts(library, project, component)
            plan.append(component)
            continue
        if not update:
            continue
        current = project.current_sums(entry)
        if entry["checksum"] == checksum(library.file_sums(component)) and current == entry["files"]:
            continue  # up to date and untouched
        edited = [f for f, s in current.items() if s not in (None, entry["files"][f])]
        if edited and not force:
            raise UserError(
                f"{project.root / edited[0]}: edited in the project since it was installed; "
                "use --force to replace local changes"
            )
        plan.append(component)
    for component in plan:
        _copy(library, project, component)
    project.record["library"] = {"name": "insectml", "source": library.source}
    if any(c.schema_groups for c in plan):
        write_json_atomic(project.root / SCHEMA, build_schema(library, project))
    project.save()
    return [c.name for c in plan]


def check(library: Library, project: Project) -> list[Status]:
    """Every installed component: ok, edited (in the project), outdated (the library has
    changed it since), missing (a file was deleted) or unknown (no longer in the library)."""
    rows = []
    for name, entry in sorted(project.installed.items()):
        current = project.current_sums(entry)
        missing = [f for f, s in current.items() if s is None]
        edited = [f for f, s in current.items() if s is not None and s != entry["files"][f]]
        if missing:
            rows.append(Status(name, "missing", ", ".join(missing)))
            continue
        if edited:
            rows.append(Status(name, "edited", ", ".join(edited)))
            continue
        if name not in library.components:
            rows.append(Status(name, "unknown", f"not in the library at {library.source}"))
            continue
        if checksum(library.file_sums(library.components[name])) != entry["checksum"]:
            rows.append(Status(name, "outdated", f"installed {entry['version']}, library {library.version}"))
            continue
        rows.append(Status(name, "ok", entry["version"]))
    return rows
