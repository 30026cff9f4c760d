"""The `vlmt` command line (`vlmt --help`; docs/architecture.md, "Commands").

Each command lives in its own module under `vlmt.commands` and is imported only when it runs.
Errors caused by the user's input (`VlmtError`) are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

from vlmt.errors import reports_errors
from vlmt.version import __version__

# command words -> (module under vlmt.commands, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("demo", "the main job: synthesise the world, train both systems, evaluate, report"),
    ("data", "synth"): ("data_synth", "write the synthetic world in the official dataset formats"),
    ("data", "validate"): ("data_validate", "check every dataset file and feature store under DIR"),
    ("data", "convert"): ("data_convert", "convert bottom-up TSV or HDF5 region features into a feature store"),
    ("train",): ("train", "train from one experiment YAML into a run folder"),
    ("evaluate", "run"): ("evaluate_run", "evaluate a run folder with the official metrics"),
    ("evaluate", "vqa"): ("evaluate_vqa", "official VQA accuracy from question, annotation and result files"),
    ("evaluate", "retrieval"): ("evaluate_retrieval", "Recall@K for image-caption retrieval from a score matrix"),
    ("evaluate", "grounding"): ("evaluate_grounding", "phrase grounding Recall@K from ranked boxes"),
    ("configs", "list"): ("configs_list", "the experiment configs shipped with vlmt"),
    ("configs", "show"): ("configs_show", "print a shipped experiment config"),
    ("export",): ("export", "write a run's trained model as a standalone folder for vlmt.load"),
    ("predict",): ("predict", "answer a question about a picture with a trained model"),
    ("serve",): ("serve", "a page and a JSON API for trained models (pip install 'vlmt[serve]')"),
    ("visualize",): ("visualize", "attention pictures of a run"),
    ("reproduce",): ("reproduce", "run a paper's experiment grid on the synthetic world"),
    ("search-layers",): ("search_layers", "single-task grid search over the decoder layer (Sec. 4.2)"),
}
GROUP_HELP = {
    "data": "synthesise, validate and convert datasets",
    "evaluate": "official metrics on runs or on result files",
    "configs": "the shipped experiment configs",
}


def at_least(low: int) -> Callable[[str], int]:
    """An argparse `type` for a count: an integer >= `low`, else a usage error naming the option
    (`argument --repeats: must be >= 1, got 0`) instead of a failure later in the run."""

    def integer(text: str) -> int:
        value = int(text)  # not a number: argparse's "invalid integer value"
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return integer


def _top_level_help() -> str:
    lines = [f"usage: vlmt COMMAND ...   (vlmt {__version__})", "", "commands:"]
    for words, (_, text) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<22} {text}")
    lines += ["", "`vlmt COMMAND --help` describes a command's options."]
    return "\n".join(lines)


def _resolve(argv: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    for n in (2, 1):
        words = tuple(argv[:n])
        if words in COMMANDS:
            return words, argv[n:]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `vlmt`; returns the process exit code."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`vlmt ... | head`): stop quietly with the shell's SIGPIPE status, as
        # other command-line tools do; stdout goes to devnull so the interpreter's last flush is quiet
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_level_help())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    resolved = _resolve(argv)
    if resolved is None:
        if argv[0] in GROUP_HELP:
            subs = [w[1] for w in COMMANDS if w[0] == argv[0]]
            print(f"usage: vlmt {argv[0]} {{{','.join(subs)}}} ...  ({GROUP_HELP[argv[0]]})",
                  file=sys.stdout if len(argv) > 1 and argv[1] in ("-h", "--help") else sys.stderr)
            return 0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2
        print(f"vlmt: unknown command {argv[0]!r}\n\n{_top_level_help()}", file=sys.stderr)
        return 2
    words, rest = resolved
    module_name, help_text = COMMANDS[words]
    module = importlib.import_module(f"vlmt.commands.{module_name}")
    examples = getattr(module, "EXAMPLES", None)
    parser = argparse.ArgumentParser(prog="vlmt " + " ".join(words), description=help_text,
                                     epilog=f"examples:\n{examples}" if examples else None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return reports_errors(module.run)(args)


if __name__ == "__main__":
    raise SystemExit(main())
