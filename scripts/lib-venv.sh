# Sourced by scripts/test and scripts/demo-tools.
# make_venv DIR REQUIREMENTS: a pinned Python venv, rebuilt when its requirements change.
make_venv() {
  local venv=$1 requirements=$2
  if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$venv/requirements.txt"; then return 0; fi
  echo "creating $venv from $requirements (PyPI)" >&2
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 keeps venv in a package of its own.
    rm -rf "$venv"
    scripts/setup debug python3-venv python3-pip >&2
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
}
