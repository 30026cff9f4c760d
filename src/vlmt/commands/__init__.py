"""One module per `vlmt` command: `add_arguments(parser)` and `run(args) -> int`.

Commands are thin: they parse arguments, call the library, and print. `vlmt.cli` imports a
command's module only when that command runs, so `vlmt --help` stays fast.
"""
