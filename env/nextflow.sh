#!/usr/bin/env bash
# The real Nextflow engine, run from its Maven Central jars.
#
# The official launcher downloads its jar at first use, which an offline cluster node
# cannot do. `make setup` resolves the same engine (io.nextflow:nextflow and its
# dependencies, version pinned in env/pom.xml) with Maven and installs this script
# as `nextflow` in the environment; it starts nextflow.cli.Launcher with the JVM
# options the official launcher uses on Java 9+.
set -euo pipefail
self="$(readlink -f "${BASH_SOURCE[0]}")"
env_dir="$(cd "$(dirname "$self")/../.." && pwd)"
lib="${INSECTML_NXF_LIB:-$env_dir/nextflow/lib}"
if ! compgen -G "$lib/nextflow-*.jar" >/dev/null; then
  echo "nextflow: engine jars not found in $lib; run 'make setup'" >&2
  exit 127
fi
export NXF_HOME="${NXF_HOME:-$env_dir/nextflow/home}"
export NXF_OFFLINE="${NXF_OFFLINE:-true}"
export NXF_DISABLE_CHECK_LATEST="${NXF_DISABLE_CHECK_LATEST:-true}"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

opts=(-Dfile.encoding=UTF-8 -Djava.awt.headless=true -Dcom.sun.security.enableAIAcaIssuers=true)
case "${1:-}" in
  run|node) ;;
  *) opts+=(-XX:+TieredCompilation -XX:TieredStopAtLevel=1) ;;
esac
for pkg in java.lang java.io java.nio java.net java.util java.util.concurrent.locks \
           java.util.concurrent.atomic java.nio.file.spi sun.nio.ch sun.nio.fs \
           sun.net.www.protocol.http sun.net.www.protocol.https sun.net.www.protocol.ftp \
           sun.net.www.protocol.file jdk.internal.misc jdk.internal.vm java.util.regex; do
  opts+=("--add-opens=java.base/$pkg=ALL-UNNAMED")
done
[[ -n "${NXF_TEMP:-}" ]] && opts+=("-Djava.io.tmpdir=$NXF_TEMP")
# shellcheck disable=SC2206  # NXF_OPTS is a user-supplied list of JVM flags
[[ -n "${NXF_OPTS:-}" ]] && opts+=($NXF_OPTS)
exec "$java" "${opts[@]}" -cp "$lib/*" nextflow.cli.Launcher "$@"
