"""env/requirements.txt is a hash-pinned lock of env/requirements.in, and env/setup.sh
installs it only with --require-hashes."""

import re

PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) --hash=sha256:[0-9a-f]{64}")


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(repo_root) -> dict[str, str]:
    """name -> version of every pin; fails on a line that is not `name==version --hash=sha256:…`."""
    pins = {}
    for line in (repo_root / "env" / "requirements.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        match = PIN.fullmatch(line)
        assert match, f"env/requirements.txt: not 'name==version --hash=sha256:<hex>': {line!r}"
        pins[canon(match[1])] = match[2]
    return pins


def setup_script(repo_root) -> str:
    return (repo_root / "env" / "setup.sh").read_text()


def test_every_package_is_pinned_with_a_sha256(repo_root):
    assert len(locked(repo_root)) > 200


def test_lock_holds_every_requirement_at_its_pinned_version(repo_root):
    pins = locked(repo_root)
    wanted = {}
    for line in (repo_root / "env" / "requirements.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            wanted[canon(name)] = version
    wrong = {
        name: (version, pins.get(name))
        for name, version in wanted.items()
        if name not in pins or version not in ("", pins[name])
    }
    assert not wrong, f"env/requirements.txt is out of date with env/requirements.in ({wrong}): run 'make lock'"


def test_lock_pins_the_build_tools_setup_installs_first(repo_root):
    tools = re.search(r"^build_tools=\(([^)]*)\)$", setup_script(repo_root), flags=re.MULTILINE)[1].split()
    assert set(tools) == {"pip", "setuptools", "wheel"}
    assert {canon(tool) for tool in tools} <= set(locked(repo_root))


def test_setup_installs_only_with_require_hashes(repo_root):
    # every pip call on the environment's venv (not make lock's scratch venv)
    calls = re.findall(
        r'^(?:pip=\(|"\$\{pip\[@\]\}"|"\$env_dir/venv/bin/pip").*$', setup_script(repo_root), flags=re.MULTILINE
    )
    assert len(calls) == 3, calls
    assert calls[0].startswith("pip=(") and "--require-hashes" in calls[0]
    assert all(call.startswith('"${pip[@]}"') for call in calls[1:]), calls
