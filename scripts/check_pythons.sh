#!/usr/bin/env bash
# Run the in-process tests (pytest -m "not process") on other Pythons than .venv's, each in
# a virtualenv of its own: .venv-py310 for 3.10, .venv-py313 for 3.13 (`make check-pythons`).
#
#   scripts/check_pythons.sh 3.10 3.13
#
# Interpreters come from pyenv (PYENV_ROOT, else ~/.pyenv), else from `pythonX.Y` on the
# PATH. A version that is nowhere to be found is not skipped in silence: the others still
# run, then the script says which were missing and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {  # print the path of a Python X.Y interpreter, or fail
  local version=$1 root=${PYENV_ROOT:-$HOME/.pyenv} candidate
  candidate=$(ls -d "$root/versions/$version".* 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$candidate" ] && [ -x "$candidate/bin/python$version" ]; then
    echo "$candidate/bin/python$version"
  else
    command -v "python$version"
  fi
}

missing=()
for version in "$@"; do
  if ! python=$(find_python "$version"); then
    missing+=("$version")
    continue
  fi
  venv=".venv-py${version/./}"
  stamp="$venv/.installed-stamp"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> $venv: Python $version ($python), installing .[test]"
    "$python" -m venv --clear "$venv"
    echo '*' > "$venv/.gitignore"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -e '.[test]'
    touch "$stamp"
  fi
  echo "==> in-process tests on $("$venv/bin/python" --version)"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not process"
done

if [ ${#missing[@]} -gt 0 ]; then
  {
    echo
    echo "!!! check-pythons: Python ${missing[*]} not found (looked in pyenv and on the PATH)."
    echo "!!! The supported versions were NOT all tested. Install them, e.g.:"
    for version in "${missing[@]}"; do echo "!!!     pyenv install $version"; done
  } >&2
  exit 1
fi
