"""`vlmt` exports its API and nothing else: `__all__` names every public function, each documented,
`from vlmt import *` gives exactly those names, and `import vlmt` loads no torch."""

from __future__ import annotations

import inspect
import subprocess
import sys

import vlmt


def test_all_is_the_api_and_star_import_gives_only_it():
    assert sorted(vlmt.__all__) == ["TrainedModel", "__version__", "evaluate", "export", "load", "train"]
    namespace: dict = {}
    exec("from vlmt import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(vlmt.__all__)
    for name in vlmt.__all__:
        obj = getattr(vlmt, name)
        if name != "__version__":
            assert callable(obj) and inspect.getdoc(obj), name
    assert isinstance(vlmt.__version__, str)
    from vlmt.inference.model import TrainedModel

    assert vlmt.TrainedModel is TrainedModel
    assert inspect.signature(vlmt.load).return_annotation in ("TrainedModel", TrainedModel)
    try:
        vlmt.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown attribute must be an AttributeError")


def test_import_vlmt_stays_light():
    code = "import sys, vlmt; print(sorted(m for m in ('torch', 'numpy', 'vlmt.inference.model') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
