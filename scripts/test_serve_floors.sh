#!/usr/bin/env bash
# The lowest versions the `serve` extra declares (pyproject.toml), installed exactly in a venv of
# their own (.venv-floors), run the serve tests: a floor that is declared is a floor that is tested.
# Uses the torch of .venv (run scripts/bootstrap.sh first), so nothing large is downloaded. About 5
# minutes on 2 cores the first time (installs), 3 after.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLMT_FLOORS_VENV:-.venv-floors}
if [[ ! -x .venv/bin/python ]]; then
  echo "run scripts/bootstrap.sh first (the floors venv reuses its torch)" >&2
  exit 2
fi
[[ -x $VENV/bin/python ]] || .venv/bin/python -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# "name>=X" of the serve extra -> "name==X"
floors=$(.venv/bin/python - <<'PY'
import re
text = open("pyproject.toml", encoding="utf-8").read()
serve = re.search(r"^serve = \[(.*?)\]", text, re.S | re.M).group(1)
print(" ".join(req.replace(">=", "==") for req in re.findall(r'"([^"]+)"', serve)))
PY
)
torch=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('torch'))")
stamp="$VENV/.floors-$(echo "$floors torch==$torch" | cksum | cut -d' ' -f1)"
if [[ ! -f $stamp ]]; then
  # shellcheck disable=SC2086
  "${pip[@]}" install "torch==$torch" $floors pytest httpx hypothesis playwright
  "${pip[@]}" install -e . $floors
  touch "$stamp"
fi
echo "serve floors: $floors"
"$VENV/bin/python" - <<PY
import importlib.metadata as m
from pip._vendor.packaging.version import Version
wanted = dict(r.split("==") for r in "$floors".split())
got = {name: m.version(name) for name in wanted}
assert all(Version(got[n]) == Version(v) for n, v in wanted.items()), f"not the floors: {got} != {wanted}"
PY
# the API, the hardening and the real server with the page in Chromium (skipped where there is none)
exec "$VENV/bin/python" -m pytest tests/serve -p no:cacheprovider "$@"
