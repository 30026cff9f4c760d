
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
