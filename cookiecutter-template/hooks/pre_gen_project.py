"""Refuse names that would make a broken project, with one line saying why."""

import keyword
import re
import sys

slug = {{ cookiecutter.project_slug | string | tojson }}
path = {{ cookiecutter.insectml_path | string | tojson }}
version = {{ cookiecutter.insectml_version | string | tojson }}

problems = []
if not re.fullmatch(r"[a-z][a-z0-9_]*", slug):
    problems.append(
        f"project_slug {slug!r}: use lowercase letters, digits and _, starting with a letter "
        "(it names the folder and the Python package)"
    )
elif keyword.iskeyword(slug) or slug in {"insectml", "test", "tests", "src"}:
    problems.append(f"project_slug {slug!r}: a reserved name; choose another")
if path and not path.startswith("/"):
    problems.append(f"insectml_path {path!r}: give an absolute path to an insectml checkout (or leave it empty)")
if not path and not re.fullmatch(r"\d+\.\d+\.\d+", version):
    problems.append(f"insectml_version {version!r}: expected X.Y.Z, e.g. 0.1.0")
if problems:
    print(f"cookiecutter-template: error: {problems[0]}", file=sys.stderr)
    sys.exit(1)
