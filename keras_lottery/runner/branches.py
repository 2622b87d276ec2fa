"""The branches of a round: the ticket and its controls, one function each.

Every branch of round r trains under a mask derived from the round's ticket
mask, from a starting point the branch chooses. The ticket rewinds the
survivors to the run's rewind point (θ0, or θk with late rewinding); each
control changes one thing, so comparing it with the ticket isolates that
thing (Frankle & Carbin 2019, Section 2). A new control is one function
registered with `@control("name")`: the config, the CLI, the search and the
reports all read `CONTROLS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np

from keras_lottery.mask_math import permuted_masks
from keras_lottery.pruning import set_masks
from keras_lottery.rewind import WeightSnapshot, reinitialize, restore_weights

TICKET = "ticket"


@dataclasses.dataclass(frozen=True)
class BranchStart:
    """What a branch may start from.

    Attributes:
        model: the search's masked model, to be set up in place.
        masks: the round's ticket masks.
        round: the round index (>= 1 for controls).
        seed: the branch's own seed (derived from the run seed, the round
            and the control's position).
        rewind_point: the run's rewind point (θ0 or θk).
        pruned_from: returns the trained weights the round's masks were
            pruned from (the previous round's ticket, or the dense round
            in one-shot mode).
        granularity: the run's pruning granularity (`"weight"`, `"unit"`,
            `"N:M"`), for controls that keep the mask's structure.
        scores: returns the run's pruner's scores of the round's weights
            (pruners at initialization), for the controls that invert them;
            None for other pruners.
    """

    model: keras.Model
    masks: dict[str, np.ndarray]
    round: int
    seed: int
    rewind_point: WeightSnapshot
    pruned_from: Callable[[], WeightSnapshot]
    granularity: str = "weight"
    scores: Callable[[], dict[str, np.ndarray]] | None = None


Branch = Callable[[BranchStart], None]

CONTROLS: dict[str, Branch] = {}
"""Control name -> function setting up that branch's masks and weights."""


def control(name: str) -> Callable[[Branch], Branch]:
    """Registers a control branch under `name`.

    Args:
        name: the control's name, as `controls=(...)` and `--controls` take it.

    Returns:
        A decorator that registers the function and returns it unchanged.

    Example:
    >>> @control("my_control")
    ... def my_control(start: BranchStart) -> None:
    ...     set_masks(start.model, start.masks)
    ...     reinitialize(start.model, start.seed + 1)
    """
    if name == TICKET or name in CONTROLS:
        raise ValueError(f"A branch named {name!r} is already registered: {[TICKET, *CONTROLS]}")

    def register(function: Branch) -> Branch:
        CONTROLS[name] = function
        return function

    return register


def branch_seed(*parts: int) -> int:
    """A seed derived from integers (run seed, round, control index).

    Example:
    >>> branch_seed(0, 1, 0) == branch_seed(0, 1, 0) != branch_seed(0, 1, 1)
    True
    """
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] >> 1)


def ticket(start: BranchStart) -> None:
    """The winning ticket: the round's mask, survivors rewound to the rewind point."""
    set_masks(start.model, start.masks)
    restore_weights(start.model, start.rewind_point)


@control("random_reinit")
def random_reinit(start: BranchStart) -> None:
    """The same mask, survivors freshly initialized (the paper's main control)."""
    set_masks(start.model, start.masks)
    reinitialize(start.model, start.seed)


@control("random_prune")
def random_prune(start: BranchStart) -> None:
    """A random mask with each layer's sparsity, rewound like the ticket.

    The mask's structure is kept: whole units are shuffled for `"unit"`
    granularity, weights within each group of M for `"N:M"`."""
    set_masks(start.model, permuted_masks(start.masks, start.seed, start.granularity))
    restore_weights(start.model, start.rewind_point)


@control("lr_rewind")
def lr_rewind(start: BranchStart) -> None:
    """The mask on the trained weights it was pruned from, learning-rate
    schedule replayed from the rewind step (Renda et al. 2020)."""
    trained = start.pruned_from()
    set_masks(start.model, start.masks)
    restore_weights(start.model, trained)


@control("inverted_scores")
def inverted_scores(start: BranchStart) -> None:
    """Each layer keeps as many weights, its lowest-scored ones, rewound
    like the ticket (Frankle et al. 2021's inversion sanity check)."""
    if start.scores is None:
        raise ValueError("The inverted_scores control inverts the scores of a pruner at "
                         "initialization (snip, grasp, synflow...); this run's pruner has none.")
    scores = start.scores()
    masks = {}
    for key, mask in start.masks.items():
        kept = int(np.count_nonzero(mask))
        order = np.argsort(np.asarray(scores[key], np.float64).reshape(-1), kind="stable")
        inverted = np.zeros(mask.size, bool)
        inverted[order[:kept]] = True
        masks[key] = inverted.reshape(mask.shape)
    set_masks(start.model, masks)
    restore_weights(start.model, start.rewind_point)


def describe() -> dict[str, str]:
    """Branch name -> the first line of its docstring (for help texts)."""
    return {name: (fn.__doc__ or "").strip().splitlines()[0]
            for name, fn in {TICKET: ticket, **CONTROLS}.items()}
