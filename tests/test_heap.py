"""glibc's mmap threshold is fixed once an EGP trains, or any pipeline through spacy egp train (.pipeline.heap).

Each case runs in its own process (the setting is process-wide and made once).
What is checked is glibc's own behaviour, through mallinfo2's count of mmapped
blocks: after a 1 MiB block is freed, glibc's dynamic threshold rises above
it, so a 900 KiB array comes from the heap (no new mmapped block); with the
threshold fixed at 128 KiB, the same array is mmapped and goes back to the OS
when freed. The machines here run glibc (>= 2.33 for mallinfo2).
"""

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import ctypes, sys
import numpy, spacy
from spacy.training import Example
from spacy_egp.pipeline.heap import fix_mmap_threshold

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "update":  # one training step of an efficient_globalpointer fixes it
    nlp = spacy.blank("en")
    nlp.add_pipe("efficient_globalpointer")
    doc = nlp.make_doc("the big red dog")
    doc.spans["sc"] = [doc.char_span(4, 15, "ANIMAL")]
    examples = [Example(nlp.make_doc(doc.text), doc)]
    nlp.initialize(lambda: examples)
    nlp.update(examples)
    print("called again:", fix_mmap_threshold())
if sys.argv[1] == "spancat":  # any pipeline trained by spacy egp train fixes it: here spaCy's own spancat
    import pathlib, tempfile
    from spacy.cli.init_config import init_config
    from spacy.tokens import DocBin
    from spacy_egp.training.resumable import train
    folder = pathlib.Path(tempfile.mkdtemp())
    nlp = spacy.blank("en")
    doc = nlp.make_doc("the big red dog")
    doc.spans["sc"] = [doc.char_span(4, 15, "ANIMAL")]
    DocBin(docs=[doc]).to_disk(folder / "train.spacy")
    config = init_config(lang="en", pipeline=["spancat"], optimize="efficiency")
    config["paths"].update(train=str(folder / "train.spacy"), dev=str(folder / "train.spacy"))
    config["training"].update(max_steps=1, eval_frequency=1)
    outcome = train(config, folder / "out", stdout=open(folder / "log", "w"), stderr=open(folder / "err", "w"))
    print("trained:", outcome.finished, "called again:", fix_mmap_threshold())
freed = numpy.ones(2**20 // 8)
del freed
before = libc.mallinfo2().hblks
kept = numpy.ones(900 * 1024 // 8)
print("new mmapped blocks:", libc.mallinfo2().hblks - before)
"""


@pytest.mark.parametrize("case, user_setting, expected", [
    ("nothing", None, "new mmapped blocks: 0"),
    ("update", None, "called again: False\nnew mmapped blocks: 1"),
    ("update", "4194304", "called again: False\nnew mmapped blocks: 0"),
    ("spancat", None, "trained: True called again: False\nnew mmapped blocks: 1"),
])
def test_training_fixes_the_mmap_threshold_unless_the_user_set_one(case, user_setting, expected):
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if user_setting is not None:  # a threshold of 4 MiB: the 900 KiB array comes from the heap, as the user chose
        env["MALLOC_MMAP_THRESHOLD_"] = user_setting
    out = subprocess.run([sys.executable, "-c", SCRIPT, case], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith(expected), out.stdout
