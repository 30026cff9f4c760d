"""The scripts in `benchmarks/` end on bad input as `vlmt` does: one `error: ...` line on stderr
naming the file and key, a non-zero exit status, no traceback (`vlmt.errors.reports_errors`)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines, err
    assert lines[-1].startswith("error: "), err
    return lines[-1]


def test_every_benchmark_main_reports_user_errors():
    """Each benchmark's `main` goes through the shared wrapper and takes its arguments."""
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "@reports_errors\ndef main(argv: list[str] | None = None)" in text, path.name


def test_schedule_shorter_than_a_cycle_is_one_line(tmp_path, tiny_world_folder, capsys):
    bench = load_benchmark("retrieval_generalisation")
    code = bench.main(["--size", "tiny", "--iterations", "10", "--every", "5", "--out", str(tmp_path)])
    assert code == 1
    line = one_error_line(capsys.readouterr().err)
    assert "schedule (periodic)" in line and "shorter than one cycle" in line


def test_unknown_override_names_the_config_and_the_key(capsys):
    bench = load_benchmark("task_gradients")
    assert bench.main(["tiny", "--set", "train.bogus=1"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "tiny.yaml" in line and "key 'train.bogus': unknown key" in line


def test_a_run_without_its_checkpoint_is_refused_before_any_measuring(tmp_path, capsys):
    bench = load_benchmark("task_gradients")
    assert bench.main(["tiny", "--run", str(tmp_path / "no-such-run")]) == 1
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert "no-such-run: no last checkpoint" in line
    assert "init:" not in err  # the config's first point was not measured first


def test_missing_run_folder_names_the_file(tmp_path, capsys):
    bench = load_benchmark("cross_world")
    missing = tmp_path / "no-such-run"
    assert bench.main(["--runs", str(missing), "--worlds", "world:tiny"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(missing / "config.yaml") in line and "not found" in line


def test_reused_data_of_another_scale_names_its_file(tmp_path, capsys):
    bench = load_benchmark("paper_scale")
    (tmp_path / "written.json").write_text(json.dumps({"scale": 0.5}), encoding="utf-8")
    assert bench.main(["--reuse", "--scale", "0.002", "--out", str(tmp_path)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "written.json") in line and "scale 0.5, not 0.002" in line
    assert (tmp_path / "written.json").is_file()  # reused data is never removed


def test_an_unknown_format_is_named_not_skipped(capsys):
    bench = load_benchmark("fuzz_readers")
    assert bench.main(["--per-format", "1", "--only", "glove text", "--only", "nope"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "--only: no format 'nope'" in line and "glove text" in line


@pytest.mark.parametrize("name, argv, message", [
    ("retrieval_generalisation", ["--iterations", "10", "--every", "0"], "argument --every: must be >= 1, got 0"),
    ("vqa_accuracy", ["--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
    ("retrieval_metrics", ["--images", "ten"], "argument --images: invalid integer value: 'ten'"),
    ("feature_store", ["--min-boxes", "5", "--max-boxes", "4"], "--max-boxes 4 is below --min-boxes 5"),
    ("paper_scale", ["--configs", "hierarchical_paper,nope"], "--configs: unknown 'nope'"),
    ("paper_scale", ["--stages", "validate,fit"], "--stages: unknown 'fit'"),
    ("encoder_step", ["--dim", "30", "--heads", "4"], "--dim 30 must be divisible by --heads 4"),
])
def test_bad_arguments_are_usage_errors(name, argv, message, capsys):
    bench = load_benchmark(name)
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_script_run_prints_no_traceback():
    """As a user runs it: the process itself exits 1 with the one line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "task_gradients.py"), "tiny",
                           "--set", "model.nonsense=3"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "key 'model.nonsense': unknown key" in one_error_line(proc.stderr)
