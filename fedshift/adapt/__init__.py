"""Site-local unsupervised adaptation of a model package (``fedshift adapt``).

A site without labels, the federation's target or a hospital that joins after training,
adapts the package it received on its own images only; nothing is sent. The result is a
new package in the same layout that ``fedshift predict`` and ``fedshift evaluate`` use
unchanged.

- :mod:`.config`: the settings (:class:`AdaptConfig`).
- :mod:`.data`: the site's images through the package's preprocessing, and patches.
- :mod:`.methods`: ``jdot``, ``tent``, ``pseudo``, ``adabn``.
- :mod:`.guard`: the collapse guard on the predicted lesion load.
- :mod:`.run`: the loop and the adapted package (:func:`adapt_package`).

No Flower here: this package sits above ``model``, ``bundle``, ``shift`` and
``inference``.
"""

from fedshift.adapt.config import AdaptConfig
from fedshift.adapt.run import AdaptResult, adapt_package

__all__ = ["AdaptConfig", "AdaptResult", "adapt_package"]
