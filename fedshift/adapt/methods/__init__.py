"""Adaptation methods, by the name ``fedshift adapt --method`` takes.

- ``jdot``: DeepJDOT against the package's reference (:mod:`.jdot`).
- ``tent``: entropy minimisation with a class-ratio prior (:mod:`.tent`).
- ``pseudo``: self-training on confident voxels (:mod:`.pseudo`).
- ``adabn``: batch-norm statistics of the site's images (:mod:`.adabn`).
"""

from __future__ import annotations

from fedshift.adapt.methods.adabn import AdaBN
from fedshift.adapt.methods.base import AdaptContext, GradientMethod, Method
from fedshift.adapt.methods.jdot import SiteJdot
from fedshift.adapt.methods.pseudo import PseudoLabels
from fedshift.adapt.methods.tent import Tent
from fedshift.errors import UsageError

#: name -> method class
METHODS: dict[str, type[Method]] = {
    "jdot": SiteJdot,
    "tent": Tent,
    "pseudo": PseudoLabels,
    "adabn": AdaBN,
}


def method_class(name: str) -> type[Method]:
    """The method called ``name``; an unknown name lists the valid ones."""
    if name not in METHODS:
        raise UsageError(f"--method {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "AdaptContext", "GradientMethod", "Method", "method_class"]
