"""Aggregators (``fed.aggregator``): Flower strategy classes, one module each.

Add one by writing ``fedshift/fl/strategies/NAME.py`` with a class
``NAME(Coordinated, <a Flower strategy>)`` and a ``make(cfg, sites)``, then listing it
here and in :data:`fedshift.runconfig.AGGREGATORS`. The server optimisers (fedavgm,
fedadam, fedyogi; Reddi et al. 2021) keep state between rounds, which goes into each
round's checkpoint (``Coordinated.state_arrays`` / ``load_state``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fedshift.errors import ConfigError
from fedshift.fl.grid import SiteInfo
from fedshift.fl.strategies import fedadam, fedavg, fedavgm, fedprox, fedtrimmedavg, fedyogi
from fedshift.fl.strategies.base import Coordinated
from fedshift.runconfig import RunConfig

#: fed.aggregator -> factory(cfg, sites)
AGGREGATORS: dict[str, Callable[[RunConfig, Mapping[int, SiteInfo]], Coordinated]] = {
    "fedavg": fedavg.make,
    "fedprox": fedprox.make,
    "fedavgm": fedavgm.make,
    "fedadam": fedadam.make,
    "fedyogi": fedyogi.make,
    "fedtrimmedavg": fedtrimmedavg.make,
}


def make_strategy(cfg: RunConfig, sites: Mapping[int, SiteInfo]) -> Coordinated:
    """The strategy ``fed.aggregator`` names; an unknown name lists the valid ones."""
    try:
        factory = AGGREGATORS[cfg.fed.aggregator]
    except KeyError:
        raise ConfigError(
            f"fed.aggregator={cfg.fed.aggregator!r} is unknown; valid: {', '.join(AGGREGATORS)}"
        ) from None
    return factory(cfg, sites)
