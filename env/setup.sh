#!/usr/bin/env bash
# Installs everything insectml needs into a cache outside the clone, keyed by a hash
# of the files that define the environment, so a fresh clone (CI) or a second
# checkout reuses it and a repeated run takes seconds.
#
#   env/setup.sh              install (or reuse) the environment
#   env/setup.sh --env-dir    print the environment folder and exit
#
# Layout: $INSECTML_CACHE/env-<hash>/{venv,nextflow/lib,nextflow/home,.complete}
# A folder without .complete is a broken earlier attempt and is rebuilt from scratch.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${INSECTML_CACHE:-$HOME/.cache/insectml}"
key="$(cat "$root/env/requirements.txt" "$root/env/pom.xml" "$root/env/nextflow.sh" | sha256sum | cut -c1-12)"
env_dir="$cache/env-$key"
# Node tools (npm-groovy-lint for 'make lint') have their own key: a change to them does
# not rebuild the Python environment.
node_dir="$cache/node-$(cat "$root/env/package.json" "$root/env/package-lock.json" | sha256sum | cut -c1-12)"
if [[ "${1:-}" == "--env-dir" ]]; then echo "$env_dir"; exit 0; fi
if [[ "${1:-}" == "--node-dir" ]]; then echo "$node_dir"; exit 0; fi

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# --- system tools ------------------------------------------------------------
declare -A apt_pkg=([java]=openjdk-17-jre-headless [mvn]=maven [git]=git [python3]=python3-venv)
missing=()
for tool in python3 java mvn git; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  pkgs=(); for t in "${missing[@]}"; do pkgs+=("${apt_pkg[$t]}"); done
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing ${pkgs[*]} with apt-get (missing: ${missing[*]})"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null \
      || die "apt-get could not install ${pkgs[*]}"
  else
    die "missing ${missing[*]}; install them (Debian: apt-get install ${pkgs[*]}) and run 'make setup' again"
  fi
fi
python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "python3 is $(python3 -V 2>&1); insectml's lock file is for Python 3.11"
java_major="$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}')"
[[ "$java_major" =~ ^[0-9]+$ ]] && (( java_major >= 17 )) \
  || die "java is version ${java_major:-unknown}; Nextflow and Multi Model Server need Java 17 or later"

# --- Debian data packages: real insect pictures for the detector demo ----------
# Only regenerating the detector demo data (and its tests) needs them; the data
# itself comes from DVC. Installed when missing and we are root with apt.
demo_pkgs=(openclipart-png tuxpaint-stamps-default)
if ! dpkg -s "${demo_pkgs[@]}" >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing ${demo_pkgs[*]} with apt-get (insect pictures for the detector demo, ~300 MB)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${demo_pkgs[@]}" >/dev/null \
      || die "apt-get could not install ${demo_pkgs[*]}"
  else
    say "note: ${demo_pkgs[*]} are not installed; detector demo generation and its tests will be skipped"
  fi
fi

# --- Node tools ----------------------------------------------------------------
if [[ ! -f "$node_dir/.complete" ]]; then
  if ! command -v npm >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      say "installing nodejs and npm with apt-get (for npm-groovy-lint)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null \
        || die "apt-get could not install nodejs npm"
    else
      die "npm is missing; install Node.js (Debian: apt-get install nodejs npm) and run 'make setup' again"
    fi
  fi
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  cp "$root/env/package.json" "$root/env/package-lock.json" "$node_dir/"
  say "installing npm-groovy-lint (env/package-lock.json) into $node_dir"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || die "npm could not install env/package-lock.json (see above)"
  touch "$node_dir/.complete"
fi

if [[ -f "$env_dir/.complete" ]]; then
  ln -sfn "$env_dir/venv" "$root/.venv"
  say "environment ready: $env_dir"
  exit 0
fi
[[ -d "$env_dir" ]] && { say "removing incomplete environment $env_dir"; rm -rf "$env_dir"; }
mkdir -p "$env_dir"
start=$SECONDS

# --- Python ------------------------------------------------------------------
say "creating virtualenv (this downloads PyTorch and friends once; a few minutes)"
python3 -m venv "$env_dir/venv"
"$env_dir/venv/bin/pip" install -q --upgrade pip
"$env_dir/venv/bin/pip" install -q --no-deps -r "$root/env/requirements.txt" \
  || die "pip could not install env/requirements.txt (see above)"

# --- Nextflow ----------------------------------------------------------------
# A nextflow already on PATH (an HPC module, the official launcher) is used as it is.
existing="$(command -v nextflow || true)"
if [[ -n "$existing" && "$existing" != "$cache"/* && -z "${INSECTML_BUNDLED_NEXTFLOW:-}" ]]; then
  say "using the nextflow on PATH: $existing (set INSECTML_BUNDLED_NEXTFLOW=1 to install the bundled engine)"
  touch "$env_dir/.complete"; ln -sfn "$env_dir/venv" "$root/.venv"; exit 0
fi
nxf_version="$(sed -n 's:.*<nextflow.version>\(.*\)</nextflow.version>.*:\1:p' "$root/env/pom.xml")"
say "resolving Nextflow $nxf_version from Maven Central"
mvn -q -B -f "$root/env/pom.xml" -Dmaven.repo.local="$cache/m2" \
  dependency:copy-dependencies -DoutputDirectory="$env_dir/nextflow/lib" \
  || die "Maven could not resolve io.nextflow:nextflow:$nxf_version (see above)"
install -m 755 "$root/env/nextflow.sh" "$env_dir/venv/bin/nextflow"
mkdir -p "$env_dir/nextflow/home"
"$env_dir/venv/bin/nextflow" -version >/dev/null || die "the Nextflow engine does not start"

touch "$env_dir/.complete"
ln -sfn "$env_dir/venv" "$root/.venv"
say "environment ready in $((SECONDS - start)) s: $env_dir"
