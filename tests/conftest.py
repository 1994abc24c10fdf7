import fcntl
import os
import random
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Span
from spacy.training import Example

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def add_pipe_through_entry_point(factory: str, language: str, report: str = "") -> str:
    """Add `factory` in a fresh interpreter that never imports spacy_egp; RETURNS what it printed.

    Language() loads the spacy_factories entry points; the one named `factory`
    must point at the function registered as the factory. `language` is a
    Language subclass ("zh.Chinese", "en.English") rather than spacy.blank:
    spacy.blank also resolves spacy.ConsoleLogger.v1, which loads every
    spacy_loggers entry point (ours imports spacy_egp), and would register
    everything without the spacy_factories entry point. Printed: the entry
    point's value, the pipe's class name, then `report` (an expression over
    nlp and pipe) if given.
    """
    module, name = language.rsplit(".", 1)
    code = (
        "import sys\n"
        "from importlib.metadata import entry_points\n"
        f"from spacy.lang.{module} import {name}\n"
        "from spacy.util import registry\n"
        "assert not [m for m in sys.modules if m.startswith('spacy_egp')], 'import spacy imported spacy_egp'\n"
        f"(point,) = [p for p in entry_points(group='spacy_factories') if p.name == {factory!r}]\n"
        f"nlp = {name}()\n"
        "assert 'spacy_egp.benchmark.logger' not in sys.modules, 'imported through the loggers entry point'\n"
        f"assert registry.factories.get({factory!r}) is point.load()\n"
        f"pipe = nlp.add_pipe({factory!r})\n"
        f"print(point.value, type(pipe).__name__, {report or repr('')})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@contextmanager
def one_ray_at_a_time() -> Iterator[None]:
    """Hold a lock that every test starting a local Ray cluster takes, across pytest-xdist's workers.

    Two clusters started at once on a 2-core machine made three Ray tests hang past their time
    limit. The lock file is named after xdist's run id, so only the workers of one run share it.
    """
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"pid{os.getpid()}")
    with open(Path(tempfile.gettempdir()) / f"spacy-egp-tests-ray-{run}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; a test that needs it fails (never skips) when it is missing."""
    if not (SHARED_DATA / "SPLITS.md").exists():
        pytest.fail(f"The datasets are missing: expected them in {SHARED_DATA} (see README.md).")
    return SHARED_DATA


def nested_examples(nlp: Language, n_docs: int, seed: int = 0) -> List[Example]:
    """Synthetic docs with deeply nested spans of several labels.

    "big red dog" is an ANIMAL that contains COLOR "red" and SIZE "big";
    "the X of the Y" is a GROUP over two animals; GROUPs nest up to three deep.
    """
    rng = random.Random(seed)
    sizes, colors, animals = ["big", "small", "tiny"], ["red", "blue", "green"], ["dog", "cat", "fox"]
    fillers = ["we", "saw", "and", "then", "there", "was", "here"]
    examples = []
    for _ in range(n_docs):
        words, spans = [], []

        def animal():
            start = len(words)
            words.extend([rng.choice(sizes), rng.choice(colors), rng.choice(animals)])
            spans.extend([(start, start + 1, "SIZE"), (start + 1, start + 2, "COLOR"), (start, start + 3, "ANIMAL")])

        def group(depth):
            start = len(words)
            words.append("the")
            group(depth - 1) if depth > 1 else animal()
            words.extend(["of", "the"])
            animal()
            spans.append((start, len(words), "GROUP"))

        for _ in range(rng.randint(1, 3)):
            words.extend(rng.sample(fillers, rng.randint(0, 3)))
            group(rng.randint(1, 3)) if rng.random() < 0.6 else animal()
        words.extend(rng.sample(fillers, rng.randint(0, 2)))
        predicted = spacy.tokens.Doc(nlp.vocab, words=words)
        reference = spacy.tokens.Doc(nlp.vocab, words=words)
        reference.spans["sc"] = [Span(reference, s, e, label) for s, e, label in spans]
        examples.append(Example(predicted, reference))
    return examples


def train(
    nlp: Language, examples: List[Example], n_epochs: int, batch_size: int = 16, seed: int = 0, learn_rate: float = 0.001
) -> List[float]:
    """Train with Adam for some epochs; RETURNS the summed loss of each epoch."""
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    rng = random.Random(seed)
    epoch_losses = []
    for _ in range(n_epochs):
        rng.shuffle(examples)
        losses: dict = {}
        for batch in spacy.util.minibatch(examples, batch_size):
            nlp.update(batch, sgd=optimizer, losses=losses)
        epoch_losses.append(sum(losses.values()))
    return epoch_losses
