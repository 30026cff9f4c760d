#!/usr/bin/env bash
# Creates .venv and installs vlmt with its test extras (VLMT_EXTRAS, default dev; "none": vlmt alone,
# what `./run demo` needs); safe to run again (it skips what is done, and adds extras a later call asks for).
#
# torch is chosen so that no machine downloads more than it needs:
#   1. a torch wheel already on this machine (pip's configured find-links) is used as is;
#   2. otherwise, on a machine without an NVIDIA GPU, the CPU build from the PyTorch CPU index;
#   3. otherwise (or if that index is unreachable) the default build from PyPI.
# Set VLMT_TORCH to a requirement (e.g. "torch==2.5.1") to choose yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
EXTRAS=${VLMT_EXTRAS:-dev}
stamp="$VENV/.vlmt-installed-$EXTRAS"

if [[ ! -x $VENV/bin/python ]]; then
  "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  spec=${VLMT_TORCH:-"torch>=2.1"}
  if [[ -n ${VLMT_TORCH:-} ]]; then
    "${pip[@]}" install "$spec"
  elif "${pip[@]}" install --no-index --no-deps "$spec" 2>/dev/null; then
    version=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('torch'))")
    "${pip[@]}" install "torch==$version"   # its dependencies, from the index
  elif ! command -v nvidia-smi >/dev/null 2>&1 \
       && "${pip[@]}" install "$spec" --index-url https://download.pytorch.org/whl/cpu 2>/dev/null; then
    :
  else
    "${pip[@]}" install "$spec"
  fi
fi

if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  if [[ $EXTRAS == none ]]; then
    "${pip[@]}" install -e .
  else
    "${pip[@]}" install -e ".[$EXTRAS]"
  fi
  touch "$stamp"
fi
