"""Make the new project whole: install the library's components for the chosen family
with `insectml modules install` (recorded in modules.json), then git init, dvc init with
the default remote, and the first commit."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

family = {{ cookiecutter.family | string | tojson }}
library = {{ cookiecutter.insectml_path | string | tojson }}
remote = {{ cookiecutter.dvc_remote | string | tojson }}
author = {{ cookiecutter.author | string | tojson }}
email = {{ cookiecutter.email | string | tojson }}


def fail(message: str) -> None:
    print(f"cookiecutter-template: error: {message}", file=sys.stderr)
    sys.exit(1)


def run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        fail(f"{' '.join(cmd[:3])} failed: {last[0]}")


def tool(name: str, checkout_bin: str | None = None) -> str:
    found = checkout_bin if checkout_bin and Path(checkout_bin).is_file() else shutil.which(name)
    if not found:
        fail(f"'{name}' not found on PATH; install it (or give insectml_path) and generate the project again")
    return found


insectml = tool("insectml", f"{library}/bin/insectml" if library else None)
run(insectml, "modules", "install", "base", family, "--project", ".", *(["--library", library] if library else []))

run("git", "init", "-q", "-b", "main")
dvc = tool("dvc")
run(dvc, "init", "-q")
run(dvc, "config", "core.analytics", "false")
run(dvc, "remote", "add", "-d", "storage", remote)
run("git", "add", "-A")
env = {**os.environ}
if not subprocess.run(["git", "config", "user.email"], capture_output=True, text=True).stdout.strip():
    # no git identity on this machine: the first commit is the template's author's
    for who in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{who}_NAME", author)
        env.setdefault(f"GIT_{who}_EMAIL", email)
done = subprocess.run(
    ["git", "commit", "-q", "-m", "New project from insectml's cookiecutter-template"],
    capture_output=True,
    text=True,
    env=env,
)
if done.returncode != 0:
    fail(f"git commit failed: {(done.stderr or done.stdout).strip()}")
print(f"{Path.cwd()}: {family} project ready; next: cd {Path.cwd().name} && make demo")
