"""The client learning rate per federated round: linear warm-up, then constant or cosine.

A pure function of the round number (no torch, no Flower), so the sites, the baselines
and the tests compute the same value. The rate is constant within a round: a round's
local steps all run at the rate of that round (``seg.train.local_steps`` steps of
AdamW), and the schedule moves between rounds.

With base rate ``lr``, floor ``lr_min``, ``W`` warm-up rounds and ``R`` rounds in the run,
round ``r`` (1-based) trains at

- ``lr * r / (W + 1)`` for ``r <= W`` (the warm-up: a linear ramp that never runs a
  round at rate 0 and reaches ``lr`` at round ``W + 1``);
- ``lr`` for ``r > W`` under ``constant``;
- ``lr_min + (lr - lr_min) * (1 + cos(pi * (r - W - 1) / (R - W))) / 2`` for ``r > W``
  under ``cosine``: ``lr`` at round ``W + 1``, decaying towards ``lr_min``, which it
  would reach one round after the last (so the last round still trains when ``lr_min``
  is 0; Loshchilov & Hutter 2017, SGDR, with one round as one step).

A run with ``R <= W`` ends inside its warm-up. ``constant`` without warm-up is today's
training: ``lr`` every round.
"""

from __future__ import annotations

import math

#: learning-rate schedules over rounds, by config name (``seg.train.lr_schedule``)
SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def round_lr(
    round_number: int,
    rounds: int | None,
    lr: float,
    schedule: str = "constant",
    warmup_rounds: int = 0,
    lr_min: float = 0.0,
) -> float:
    """The learning rate of round ``round_number`` (1-based) of a run of ``rounds`` rounds.

    Parameters
    ----------
    round_number : the federated round, 1 for the first.
    rounds : the run's number of rounds (``fed.rounds``), at least ``round_number``; may
        be None under ``constant``, which does not depend on it.
    lr : the base (peak) rate, ``seg.train.lr``.
    schedule : one of :data:`SCHEDULES`.
    warmup_rounds : rounds of linear warm-up before the peak (0: none).
    lr_min : the floor the cosine decays towards (``cosine`` only).

    Returns
    -------
    The rate, a float in ``(0, lr]`` (``[lr_min, lr]`` after the warm-up).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is unknown; valid: {', '.join(SCHEDULES)}")
    if round_number < 1:
        raise ValueError(f"round_number={round_number!r} is invalid: rounds count from 1")
    if rounds is not None and not 1 <= round_number <= rounds:
        raise ValueError(f"round_number={round_number!r} is invalid: the run has {rounds} rounds")
    if lr <= 0:
        raise ValueError(f"lr={lr!r} is invalid: expected > 0")
    if warmup_rounds < 0:
        raise ValueError(f"warmup_rounds={warmup_rounds!r} is invalid: expected >= 0")
    if not 0.0 <= lr_min <= lr:
        raise ValueError(f"lr_min={lr_min!r} is invalid: expected in [0, lr={lr!r}]")
    if round_number <= warmup_rounds:
        return lr * round_number / (warmup_rounds + 1)
    if schedule == "constant":
        return lr
    if rounds is None:
        raise ValueError(f"the {schedule} schedule needs the run's number of rounds")
    progress = (round_number - warmup_rounds - 1) / (rounds - warmup_rounds)
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
