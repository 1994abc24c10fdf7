"""`spacy egp …` (spaCy's spacy_cli entry point), `python -m spacy_egp.<command>`, and what `import spacy_egp` registers."""

import subprocess
import sys

import pytest

from spacy_egp.cli import COMMANDS


def run(*args: str) -> subprocess.CompletedProcess:
    """Run a command with this interpreter; RETURNS the finished process (text output)."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)


def test_spacy_egp_help_lists_the_commands():
    proc = run("-m", "spacy", "egp", "--help")
    assert proc.returncode == 0, proc.stderr
    # typer draws the list in a box when rich is installed: "│ convert   Convert a dataset … │"
    first_words = {line.replace("│", " ").split()[0] for line in proc.stdout.splitlines() if line.replace("│", " ").split()}
    assert set(COMMANDS) <= first_words, proc.stdout


def test_spacy_lists_the_egp_group():
    proc = run("-m", "spacy", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "egp" in proc.stdout.split(), proc.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_help_has_an_example_in_both_forms(command):
    """`spacy egp X --help` reaches X's own argparse parser (its usage names it), as `python -m spacy_egp.X` does."""
    group = run("-m", "spacy", "egp", command, "--help")
    module = run("-m", f"spacy_egp.{command}", "--help")
    for proc, prog in ((group, f"spacy egp {command}"), (module, f"python -m spacy_egp.{command}")):
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: {prog}"), proc.stdout[:200]
        assert "\nexamples:\n" in proc.stdout, proc.stdout[-400:]
        assert f"\n  spacy egp {command} " in proc.stdout.split("\nexamples:\n", 1)[1]


def test_group_passes_arguments_and_exit_status_through(tmp_path):
    """Arguments reach the command's parser unchanged, and its exit status comes back (1: missing data)."""
    proc = run("-m", "spacy", "egp", "evaluate", str(tmp_path / "none.json"), str(tmp_path / "none.spacy"),
               "--spans-key", "sc")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: "), proc.stderr
    bad = run("-m", "spacy", "egp", "convert", "nope", "in", "out", "--lang", "en")
    assert bad.returncode == 2 and "usage: spacy egp convert" in bad.stderr and "invalid choice: 'nope'" in bad.stderr


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
        "import sys; assert 'spacy_egp.pipeline.gplinker' not in sys.modules  # not the gplinker module's doing\n"
        "import spacy\n"
        "doc = spacy.blank('en')('John works for Acme')\n"
        "doc._.relations = [(doc[0:1], 'Work_For', doc[3:4])]\n"
        "print(len(doc._.relations), doc._.relations[0].label)\n"
    )
    proc = run("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "Work_For"]
