"""The run's decisions that do not depend on how sites are reached: who trains, whether a
round aligns, and the "validation -> threshold -> test" rule. Pure functions, shared by the
Flower coordinator (:mod:`fedshift.fl.server`) and the baselines outside Flower
(:mod:`fedshift.baselines`), so both tune and apply thresholds the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fedshift.errors import FedShiftError
from fedshift.runconfig import RunConfig, level_at_least

#: the count a site's validation metrics carry (cases it was scored on)
COUNT_KEY = "n_cases"


@dataclass(frozen=True)
class SiteStanding:
    """What the coordinator knows of a site before training: its readiness answer."""

    name: str
    level: str
    labelled: bool


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _scored(m: Mapping[str, float | None], count_key: str) -> bool:
    return (m.get(count_key) or 0) > 0


def federation_threshold(
    val: Mapping[str, Mapping[str, float | None]], count_key: str = COUNT_KEY
) -> float | None:
    """The decision threshold for sites that tuned none: the mean of the thresholds the
    sites with validation cases tuned (``count_key`` > 0, a finite ``threshold``);
    ``None`` when no site has one."""
    values = [
        m["threshold"]
        for m in val.values()
        if _scored(m, count_key) and _finite(m.get("threshold"))
    ]
    return float(sum(values) / len(values)) if values else None


def mean_val_dice(
    val: Mapping[str, Mapping[str, float | None]], count_key: str = COUNT_KEY
) -> float | None:
    """Mean validation Dice of the sites with validation cases, ``None`` without any."""
    values = [m["dice"] for m in val.values() if _scored(m, count_key) and _finite(m.get("dice"))]
    return float(sum(values) / len(values)) if values else None


def aligns(cfg: RunConfig, rnd: int, val_dice: float | None) -> bool:
    """Whether round ``rnd`` adds the alignment term (``seg.align.method``): from
    ``fed.align_from_round`` on, once the model of the round before reached
    ``fed.align_min_val_dice`` mean validation Dice on the labelled sites. A model that
    finds no lesion yet has nothing to align (docs/results/adaptation.md)."""
    if not cfg.aligns_embeddings or rnd < cfg.fed.align_from_round:
        return False
    return val_dice is not None and val_dice >= cfg.fed.align_min_val_dice


def trainers(cfg: RunConfig, sites: Iterable[SiteStanding]) -> set[str]:
    """Sites that train every round: labelled, at readiness ``fed.train_level`` or better."""
    return {s.name for s in sites if s.labelled and level_at_least(s.level, cfg.fed.train_level)}


def adapters(cfg: RunConfig, sites: Iterable[SiteStanding]) -> set[str]:
    """Sites without labels that train on the alignment term alone in aligned rounds
    (structured data, level B or better); none when the run does not align."""
    if not cfg.aligns_embeddings:
        return set()
    return {s.name for s in sites if not s.labelled and level_at_least(s.level, "B")}


def fedavg_weight(cases: float, factor: float, uniform: bool) -> float:
    """What FedAvg weighs a site's update by: its training ``cases`` times the ``factor``
    the coordinator sets (1, or ``fed.unlabelled_weight`` at a site without labels); with
    ``uniform`` (differential privacy: every site's clipped update must count the same for
    the noise to cover it) the factor alone."""
    return float(factor) if uniform else float(cases) * float(factor)


def enrolment_refusals(
    reported: Mapping[int, str], enrolled: Mapping[str, int | None]
) -> dict[int, str]:
    """node -> why it is refused, for the nodes whose readiness answer (``reported``: node
    -> the site name it gave) does not match the coordinator's enrolment (``enrolled``:
    site name -> node id, None where the coordinator does not know the id): a name that is
    not enrolled, a node id other than the name's, or a name a second node already gave."""
    refused: dict[int, str] = {}
    claimed: dict[str, int] = {}
    for node, name in sorted(reported.items()):
        if name not in enrolled:
            refused[node] = f"site name {name!r} is not enrolled"
        elif enrolled[name] is not None and enrolled[name] != node:
            refused[node] = f"site {name!r} is enrolled as node {enrolled[name]}, not {node}"
        elif name in claimed:
            refused[node] = f"site {name!r} already answered as node {claimed[name]}"
        else:
            claimed[name] = node
    return refused


def check_round_updates(cfg: RunConfig, rnd: int, accepted: int, expected: int) -> None:
    """Raise unless round ``rnd`` has updates from at least ``fed.min_train_sites`` of the
    ``expected`` training sites (the others failed, timed out or were refused): the run
    then stops after the last checkpoint, to be resumed once the sites are back."""
    if accepted < max(1, cfg.fed.min_train_sites):
        raise FedShiftError(
            f"round {rnd}: {accepted} of {expected} training sites returned an accepted update, "
            f"fed.min_train_sites={cfg.fed.min_train_sites}; the run stops after round "
            f"{rnd - 1}'s checkpoint (start the missing sites, then run again with resume=true)"
        )
