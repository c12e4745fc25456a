#!/usr/bin/env bash
# The contract's CI checks: `buf format` (no diff), `buf lint`, and
# `buf breaking` against the previous commit (AGAINST, default HEAD~1).
#
# A breaking change fails unless the package version changed: when
# pyproject.toml's `version` in the working tree differs from the one in
# AGAINST, breaking changes are allowed and the script says so. (In CI the
# working tree is HEAD, so this compares HEAD with HEAD~1.)
#
# buf reads `.git#ref=...` by cloning this repository's own .git locally, so
# it works offline. With no previous commit (the first commit) there is
# nothing to compare; a shallow clone without it fails in CI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
buf=${BUF:-$root/.venv/bin/buf}
py=${PYTHON:-$root/.venv/bin/python}
against=${AGAINST:-HEAD~1}

echo "== buf format"
"$buf" format --diff --exit-code

echo "== buf lint"
"$buf" lint

echo "== buf breaking against $against"
if ! git rev-parse --verify --quiet "$against^{commit}" >/dev/null; then
  if [ "$(git rev-parse --is-shallow-repository)" = "true" ]; then
    echo "buf breaking: $against is missing from this shallow clone; fetch more history (git fetch --deepen=1)" >&2
    exit 1
  fi
  echo "buf breaking: skipped, $against does not exist (first commit)"
  exit 0
fi

read_version='import sys, tomllib; print(tomllib.loads(sys.stdin.read())["project"]["version"])'
new_version=$("$py" -c "$read_version" <pyproject.toml)
old_version=$(git show "$against:pyproject.toml" | "$py" -c "$read_version")

if [ "$new_version" != "$old_version" ]; then
  echo "buf breaking: the package version changed ($old_version -> $new_version); breaking changes are allowed"
  "$buf" breaking --against ".git#ref=$against" || echo "buf breaking: the changes above are breaking; allowed by the version change"
  exit 0
fi

if ! "$buf" breaking --against ".git#ref=$against"; then
  echo "buf breaking: the contract changed incompatibly since $against (version $new_version);" \
    "keep it compatible, or bump version in pyproject.toml to release a breaking change" >&2
  exit 1
fi
echo "buf breaking: compatible with $against"
