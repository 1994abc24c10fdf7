"""What every command's parser shares."""

import argparse
from typing import Any, Dict


class ExamplesFormatter(argparse.HelpFormatter):
    """argparse's default layout, except that the examples block keeps its lines (one command per line)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def with_examples(examples: str, raw_description: bool = False) -> Dict[str, Any]:
    """argparse.ArgumentParser keyword arguments that end its --help with an examples block.

    raw_description: keep the description's own line breaks too (a module docstring used as description).
    """
    formatter = argparse.RawDescriptionHelpFormatter if raw_description else ExamplesFormatter
    return {"epilog": "examples:\n" + examples, "formatter_class": formatter}
