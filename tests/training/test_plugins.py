"""Extension without forking: a package registers a data source, a model and a task through the
entry-point group `vlmt.plugins` (examples/plugin), and the CLI trains, exports and loads it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vlmt
from vlmt.errors import ConfigError

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "plugin"


def vlmt_cli(args: list[str], *, cwd: Path, site: Path | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site) if site else "",
                                                                      os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "vlmt", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example plugin installed (pip, no network) into a folder of its own: its site dir."""
    site = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("source") / "plugin"  # a build writes into its source folder: a copy's
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(source)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(site.glob("vlmt_example_plugin-*.dist-info/entry_points.txt"))
    return site


def test_an_installed_plugin_trains_exports_and_loads_through_the_cli(installed, tmp_path):
    config = installed / "vlmt_example_plugin" / "toy.yaml"
    shown = vlmt_cli(["configs", "show", str(config), "--resolved"], cwd=tmp_path, site=installed)
    assert shown.returncode == 0, shown.stderr
    assert "type: toy_clusters" in shown.stdout and "in_dim" not in shown.stdout  # a from_data field stays unset
    trained = vlmt_cli(["train", str(config), "--out", "run", "--json"], cwd=tmp_path, site=installed)
    assert trained.returncode == 0, trained.stderr[-2000:]
    summary = json.loads(trained.stdout)
    assert summary["best"]["metric"] == "clusters/accuracy" and summary["best"]["value"] > 90.0
    exported = vlmt_cli(["export", "run", "--out", "model", "--json"], cwd=tmp_path, site=installed)
    assert exported.returncode == 0, exported.stderr[-2000:]
    files = json.loads(exported.stdout)["files"]
    assert files == ["README.md", "config.json", "model.safetensors", "toy_assets.json"]
    info = json.loads((tmp_path / "model" / "config.json").read_text())
    assert info["model_type"] == "toy_mlp" and info["model"] == {"hidden": 16, "in_dim": 2}
    assert info["metrics"]["clusters"]["accuracy"] > 90.0
    script = ("import json, vlmt, torch; m = vlmt.load('model'); task = m.tasks['clusters']; "
              "x = torch.tensor([[1.0, 0.0], [-0.5, 0.866], [-0.5, -0.866]]); "  # the three class centres
              "print(json.dumps({'heads': m.heads, 'classes': m.assets.classes, "
              "'predicted': task.head(m.model(x)).argmax(1).tolist()}))")
    env = {**os.environ, "PYTHONPATH": str(installed)}
    loaded = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert json.loads(loaded.stdout) == {"heads": {"clusters": "toy_classify"}, "classes": ["north", "east", "south"],
                                         "predicted": [0, 1, 2]}
    # without the plugin the model's type is unknown, and the error says so
    with pytest.raises(ConfigError, match="model type 'toy_mlp' is not registered here.*plugin"):
        vlmt.load(tmp_path / "model")


def test_a_plugin_that_fails_to_import_is_named(tmp_path):
    site = tmp_path / "site"
    (site / "broken_plugin").mkdir(parents=True)
    (site / "broken_plugin" / "__init__.py").write_text("raise RuntimeError('missing dependency xyz')\n")
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vlmt.plugins]\nbroken = broken_plugin\n")
    proc = vlmt_cli(["train", "tiny", "--print-config"], cwd=tmp_path, site=site)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: plugin 'broken' (broken_plugin, entry point group vlmt.plugins): "
                                   "cannot be imported: missing dependency xyz")
