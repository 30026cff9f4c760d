
from vlmt import cli


def test_help_lists_every_command_of_the_contract(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for words in ["demo", "data synth", "data validate", "data convert", "train", "evaluate run",
                  "evaluate vqa", "evaluate retrieval", "predict", "visualize", "reproduce",
                  "search-layers"]:
        assert words in out


def test_unknown_command_is_usage_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_module_imports_and_builds_its_parser():
    import argparse
    import importlib

    for module_name, _ in cli.COMMANDS.values():
        module = importlib.import_module(f"vlmt.commands.{module_name}")
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        assert callable(module.run)


def _example_commands(text: str) -> list[list[str]]:
    """The `vlmt ...` command lines of an EXAMPLES block, as argument lists (continuations joined,
    comments, pipes and redirections cut off)."""
    import shlex

    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].split("&&")[0].split(" > ")[0].strip()
        words = shlex.split(line)
        if "vlmt" in words[:4] and words[0] != "python":
            commands.append(words[words.index("vlmt") + 1:])
    return commands


def test_every_command_has_help_examples_that_its_parser_accepts():
    import argparse
    import importlib

    for words, (module_name, _) in cli.COMMANDS.items():
        module = importlib.import_module(f"vlmt.commands.{module_name}")
        examples = getattr(module, "EXAMPLES", "")
        commands = _example_commands(examples)
        assert commands, f"vlmt {' '.join(words)}: no example in its --help"
        for argv in commands:
            resolved = cli._resolve(argv)
            assert resolved is not None, f"{module_name}: example names no command: {argv}"
            used, rest = resolved
            parser = argparse.ArgumentParser(exit_on_error=False)
            importlib.import_module(f"vlmt.commands.{cli.COMMANDS[used][0]}").add_arguments(parser)
            parser.parse_args(rest)  # raises on an option the command does not have


def test_help_shows_the_examples(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n  vlmt train tiny --out runs/tiny\n  vlmt export runs/tiny --out models/tiny" in out


def test_output_into_a_closed_pipe_ends_quietly():
    """`vlmt --help | head -1`: the reader leaves early; vlmt stops without a traceback."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # every write to the pipe now fails, as after `head` has exited
    try:
        proc = subprocess.run([sys.executable, "-m", "vlmt", "--help"], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def test_at_least_makes_a_count_below_its_floor_a_usage_error(capsys):
    import argparse

    import pytest

    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--repeats", type=cli.at_least(1))
    assert parser.parse_args(["--repeats", "3"]).repeats == 3
    for text, message in (("0", "argument --repeats: must be >= 1, got 0"),
                          ("x", "argument --repeats: invalid integer value: 'x'")):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(["--repeats", text])
        assert stop.value.code == 2 and message in capsys.readouterr().err
