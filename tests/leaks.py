"""Does a text hold a site's numbers in the clear? (used by the secure-statistics tests)"""

from __future__ import annotations

import re
from collections.abc import Sequence

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def holds_sequence(text: str, values: Sequence[float]) -> bool:
    """True when ``values`` appear in order, one after another, among the numbers of
    ``text`` (in any number format that parses to the same floats)."""
    stream = [float(x) for x in NUMBER.findall(text)]
    n = len(values)
    seq = [float(v) for v in values]
    return any(stream[i : i + n] == seq for i in range(len(stream) - n + 1))
