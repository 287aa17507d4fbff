"""Data readiness levels (MIDaR, Harvey & Glocker 2019) and how a site earns one.

- ``D``: data exists but no image can be read, or some file holds identifying text.
- ``C``: readable and de-identified, but not structured (nnU-Net layout) or no case
  passed the checks ("unchecked").
- ``B``: structured, and at least one case passed every integrity and quality check;
  cases with an error finding are excluded, not counted.
- ``A``: ``B`` plus training labels that pass the label checks (a ``labelsTr/`` folder and
  at least one usable labelled training case). A site without ``labelsTr/`` is at most B.

The level and the counts are the only readiness results that leave the site.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVEL_A = "A"
LEVEL_B = "B"
LEVEL_C = "C"
LEVEL_D = "D"

#: worst to best
LEVELS = (LEVEL_D, LEVEL_C, LEVEL_B, LEVEL_A)

LEVEL_MEANING = {
    LEVEL_D: "not usable: no readable image, or not de-identified",
    LEVEL_C: "readable and de-identified, but unstructured or no case passed the checks",
    LEVEL_B: "structured, usable cases passed integrity and quality checks",
    LEVEL_A: "B plus training labels that pass the label checks: ready for the task",
}


@dataclass(frozen=True)
class LevelEvidence:
    """What the level is decided from (counts over the site's cases).

    Attributes
    ----------
    n_readable_images : cases (or loose files) whose image could be read.
    identifiable : some file holds identifying text.
    structured : the folder follows the nnU-Net v2 raw layout.
    n_usable : cases with no error finding.
    has_train_labels : the site has a ``labelsTr/`` folder.
    n_usable_labelled_train : usable training cases with a label.
    """

    n_readable_images: int
    identifiable: bool
    structured: bool
    n_usable: int
    has_train_labels: bool
    n_usable_labelled_train: int


def assign_level(evidence: LevelEvidence) -> str:
    """The MIDaR level, one of :data:`LEVELS`."""
    if evidence.n_readable_images == 0 or evidence.identifiable:
        return LEVEL_D
    if not evidence.structured or evidence.n_usable == 0:
        return LEVEL_C
    if evidence.has_train_labels and evidence.n_usable_labelled_train > 0:
        return LEVEL_A
    return LEVEL_B


def at_least(level: str, minimum: str) -> bool:
    """True when ``level`` is ``minimum`` or better (``at_least("A", "B")`` is True)."""
    for value in (level, minimum):
        if value not in LEVELS:
            raise ValueError(f"unknown readiness level {value!r}; known: {', '.join(LEVELS)}")
    return LEVELS.index(level) >= LEVELS.index(minimum)
