"""`spacy egp …` (spaCy's spacy_cli entry point), `python -m spacy_egp.<command>`, and what `import spacy_egp` registers."""

import importlib
import subprocess
import sys

import pytest
from click.testing import Result
from spacy.cli._util import app
from typer.testing import CliRunner

import spacy_egp.cli.app  # noqa: F401  (adds the egp group to spaCy's app, as the spacy_cli entry point does)
from spacy_egp.cli import COMMANDS


def run(*args: str) -> subprocess.CompletedProcess:
    """Run a command with this interpreter; RETURNS the finished process (text output)."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)


def test_spacy_egp_help_lists_the_commands():
    """In a fresh interpreter, through the entry point: what a user typing `spacy egp --help` sees."""
    proc = run("-m", "spacy", "egp", "--help")
    assert proc.returncode == 0, proc.stderr
    # typer draws the list in a box when rich is installed: "│ convert   Convert a dataset … │"
    first_words = {line.replace("│", " ").split()[0] for line in proc.stdout.splitlines() if line.replace("│", " ").split()}
    assert set(COMMANDS) <= first_words, proc.stdout


def invoke(*args: str) -> Result:
    """Run `spacy ARGS` in this process through spaCy's typer app (the group added by spacy_egp.cli.app)."""
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_help_has_an_example_in_both_forms(command, capsys):
    """`spacy egp X --help` reaches X's own argparse parser, as `python -m spacy_egp.X --help` (its main) does."""
    group = invoke("egp", command, "--help")
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(f"spacy_egp.{command}").main(["--help"])
    assert exited.value.code == 0
    module = capsys.readouterr().out
    for output, prog in ((group.output, f"spacy egp {command}"), (module, f"python -m spacy_egp.{command}")):
        assert output.startswith(f"usage: {prog}"), output[:200]
        assert "\nexamples:\n" in output, output[-400:]
        assert f"\n  spacy egp {command} " in "\n" + output.split("\nexamples:\n", 1)[1]
    assert group.exit_code == 0


def test_group_passes_arguments_and_exit_status_through(tmp_path):
    """Arguments reach the command's parser unchanged, and its exit status comes back (1: missing data)."""
    missing = invoke("egp", "evaluate", str(tmp_path / "none.json"), str(tmp_path / "none.spacy"), "--spans-key", "sc")
    assert missing.exit_code == 1
    assert "error: " in missing.output and "none.json" in missing.output
    bad = invoke("egp", "convert", "nope", "in", "out", "--lang", "en")
    assert bad.exit_code == 2
    assert "usage: spacy egp convert" in bad.output and "invalid choice: 'nope'" in bad.output


def test_import_spacy_egp_registers_doc_relations():
    """In a fresh interpreter: `import spacy_egp` alone gives doc._.relations, and registering again is harmless."""
    code = (
        "from spacy.tokens import Doc\n"
        "assert not Doc.has_extension('relations')\n"
        "import spacy_egp\n"
        "assert Doc.has_extension('relations')\n"
        "getter = Doc.get_extension('relations')[2]\n"
        "from spacy_egp.pipeline.relations import register_extensions\n"
        "register_extensions(); register_extensions()\n"
        "assert Doc.get_extension('relations')[2] is getter\n"
        "from spacy_egp.pipeline.relations import get_relations\n"
        "assert getter is get_relations\n"
        "import spacy\n"
        "doc = spacy.blank('en')('John works for Acme')\n"
        "doc._.relations = [(doc[0:1], 'Work_For', doc[3:4])]\n"
        "print(len(doc._.relations), doc._.relations[0].label)\n"
    )
    proc = run("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "Work_For"]
