#!/usr/bin/env bash
# Builds Warden with its data path compiled (WARDEN_COMPILE=1: a failed compilation fails the
# build instead of falling back to plain Python) and installs it, with the PostgreSQL extra,
# into a new virtualenv at PREFIX; then checks that the installed `warden` runs the compiled
# data path and loads the shipped configs. The Dockerfile's builder stage runs this, and so
# does CI (.ci/run), so the image's build is the one tested.
#
#   deploy/build.sh PREFIX     e.g. deploy/build.sh /opt/warden
#
# Needs python3 (3.11 or later, with venv), a C compiler and Python's headers, and PyPI.
# The wheel is built from a copy of the sources, so the tree it runs in is left as it was.
set -euo pipefail

prefix=${1:?usage: deploy/build.sh PREFIX}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What the sdist holds (MANIFEST.in), nothing of a developer's build or caches.
mkdir "$work/src"
cp -r "$root/pyproject.toml" "$root/setup.py" "$root/README.md" "$root/LICENSE" \
    "$root/MANIFEST.in" "$root/build_support" "$root/warden" "$work/src/"
find "$work/src" \( -name '__pycache__' -o -name '*.so' \) -prune -exec rm -rf {} +

"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --upgrade pip
WARDEN_COMPILE=1 "$prefix/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" \
    "$work/src"
wheel=$(ls "$work/dist"/warden-*.whl)
"$prefix/bin/python" -m pip install --quiet "${wheel}[postgres]"

version=$("$prefix/bin/warden" --version)
echo "$version"
case "$version" in
    *"data path compiled"*) ;;
    *) echo "deploy/build.sh: the installed warden does not run the compiled data path" >&2
       exit 1 ;;
esac
# The configs shipped beside this script load in the build made (their ${ENV} given).
POSTGRES_PASSWORD=x REDIS_URL=redis://redis:6379/0 \
    "$prefix/bin/warden" check-config -c "$root/deploy/compose/warden.yaml"
