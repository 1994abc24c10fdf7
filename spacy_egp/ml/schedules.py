"""Learning-rate schedules for the shipped configs.

`spacy_egp.warmup_linear.v1` is Thinc's `warmup_linear.v1` (a linear warm-up
to `initial_rate`, then a linear decay to 0 at `total_steps`) for configs that
write the step budget once, in [training], and refer to it from the schedule:

    [training]
    max_steps = 6000

    [training.optimizer.learn_rate]
    @schedules = "spacy_egp.warmup_linear.v1"
    warmup_steps = 250
    total_steps = ${training.max_steps}
    initial_rate = 0.002

so that `--training.max_steps N` (what project.yml's `train` and the
benchmarks set) also moves the end of the decay to step N.

Why not Thinc's own schedule with that reference: spaCy builds an optimizer in
two ways. `spacy train` resolves the interpolated [training] block, where
`${training.max_steps}` is a number. `Language.create_optimizer`, which
`nlp.initialize()` without `sgd` (as `spacy debug data` calls it) and
`nlp.resume_training()` use, resolves [training.optimizer] on its own, outside
the config it belongs to; the reference then reaches the schedule as the
literal string "${training.max_steps}", and Thinc's `int` check fails (issue 24).
This schedule accepts such an unresolved reference: the optimizer can be built
(`spacy debug data` never takes a training step with it), and it refuses,
naming the cause, to take a training step without knowing where to end.

Alternatives weighed: writing the number in the schedule (`total_steps = 6000`,
`max_steps = ${training.optimizer.learn_rate.total_steps}`, as spaCy's
quickstart writes `total_steps`) makes the optimizer block self-contained, but
then `--training.max_steps` could no longer move the schedule, only be refused,
and every caller that sets max_steps would have to set the schedule instead.
Handing max_steps to the schedule at run time from a `[training.before_update]`
callback is not possible without global state: `spacy train` trains with an
optimizer it resolves separately from the one stored on `nlp`.
"""

import re
from typing import Iterator, Union

from spacy.util import registry
from thinc.api import warmup_linear

# A ${section.key} reference that spaCy left uninterpolated (see the module docstring).
_UNRESOLVED_REFERENCE = re.compile(r"^\$\{[^{}]+\}$")


@registry.schedules("spacy_egp.warmup_linear.v1")
def make_warmup_linear(initial_rate: float, warmup_steps: int, total_steps: Union[int, str]) -> Iterator[float]:
    """Linear warm-up from 0 to `initial_rate` over `warmup_steps`, then linear decay to 0 at `total_steps`.

    The rates are those of Thinc's `warmup_linear.v1` (if `total_steps` is not
    past `warmup_steps`, the whole run is warm-up). `total_steps` is normally
    `${training.max_steps}` and must be > 0.

    initial_rate (float): The rate at the end of the warm-up.
    warmup_steps (int): The number of warm-up steps (>= 0).
    total_steps (Union[int, str]): The step at which the rate reaches 0; or an
        unresolved `${...}` reference, which spaCy passes when it resolves
        [training.optimizer] on its own (`nlp.initialize()` without `sgd`, e.g.
        in `spacy debug data`). The schedule then gives the step-0 rate and
        raises a ValueError at the first training step.
    RETURNS (Iterator[float]): The rate for step 0, 1, 2, ...
    """
    if warmup_steps < 0:
        raise ValueError(f"spacy_egp.warmup_linear.v1: warmup_steps must be >= 0, got {warmup_steps}")
    if isinstance(total_steps, str):
        if not _UNRESOLVED_REFERENCE.match(total_steps):
            raise ValueError(f"spacy_egp.warmup_linear.v1: total_steps must be an integer > 0 or a reference "
                             f"such as ${{training.max_steps}}, got {total_steps!r}")
        return _rates_without_a_total(initial_rate, warmup_steps, total_steps)
    if total_steps <= 0:
        raise ValueError(
            f"spacy_egp.warmup_linear.v1: total_steps is {total_steps}, but the learning rate decays to 0 at "
            f"total_steps, so it must be > 0. It is normally ${{training.max_steps}}: set [training] max_steps "
            f"(or --training.max_steps) to the number of training steps; 0 there means 'no step limit', which "
            f"this schedule cannot end at. To train by epochs instead, use Thinc's warmup_linear.v1 with "
            f"total_steps written out.")
    return warmup_linear(initial_rate, warmup_steps, total_steps)


def _rates_without_a_total(initial_rate: float, warmup_steps: int, reference: str) -> Iterator[float]:
    """The step-0 rate, which does not depend on the total; then an error instead of the next rate."""
    # Thinc's formula at step 0: 0 during a warm-up, else (total - 0) / total = 1 for any total > 0.
    yield 0.0 if warmup_steps > 0 else initial_rate
    raise ValueError(
        f"spacy_egp.warmup_linear.v1: total_steps is the unresolved reference {reference!r}, so the schedule "
        f"does not know at which step to end. spaCy built this optimizer from [training.optimizer] alone "
        f"(Language.create_optimizer, used by nlp.initialize() and nlp.resume_training() without sgd), where "
        f"references to other sections are not interpolated. Train with `spacy train`, or pass "
        f"sgd=registry.resolve(nlp.config.interpolate()['training'])['optimizer'] (spacy.util.registry).")
