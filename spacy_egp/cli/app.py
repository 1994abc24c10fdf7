"""`spacy egp …`: this package's commands as a group of spaCy's command line.

spaCy imports every `spacy_cli` entry point before it runs a command (setup.cfg
registers this module there), the way spacy-huggingface-hub adds `spacy
huggingface-hub`. Each subcommand hands its raw arguments, `--help` included,
to the argparse `main` of spacy_egp.cli.COMMAND, so there is one parser per
command whichever way it is called.
"""

import importlib
from typing import Callable

import typer
from spacy.cli._util import app

from . import COMMANDS

HELP = "Efficient GlobalPointer and GPLinker: datasets, thresholds, evaluation, annotation."
# Unknown options and --help go to the command's own parser instead of typer's.
FORWARD_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}

egp_cli = typer.Typer(name="egp", help=HELP, no_args_is_help=True)


def forward(name: str) -> Callable[[typer.Context], None]:
    """A typer command that runs `main(ctx.args)` of spacy_egp.cli.NAME and exits with its status."""

    def command(ctx: typer.Context) -> None:
        # imported when run, so that `spacy --help` (which imports this module) stays quick
        main = importlib.import_module(f"{__package__}.{name}").main
        raise typer.Exit(main(list(ctx.args), prog=f"spacy egp {name}"))

    command.__doc__ = COMMANDS[name]
    return command


for _name, _help in COMMANDS.items():
    egp_cli.command(_name, help=f"{_help} (`spacy egp {_name} --help` for its options)",
                    context_settings=FORWARD_ARGS, add_help_option=False)(forward(_name))

app.add_typer(egp_cli)
