"""The coordinator's statistics rounds: secure sum -> reference -> shift diagnosis.

:func:`secure_statistics_round` runs one SecAgg round (:mod:`fedshift.secagg.secure`) as
four Flower query messages (:mod:`fedshift.fl.secure_sum`), relaying public keys and
ciphertexts it cannot read between the sites (handlers in
:mod:`fedshift.fl.client_secure`); it learns the sum of the sites'
:class:`~fedshift.shift.stats.SiteStatistics` over at least ``fed.secagg_min_sites`` sites
and nothing per site. :func:`federation_round` builds the federation's reference from
that sum, broadcasts it (``query.reference``), collects each site's shift indicators
(scalars the site computes itself) and attributes the shifts
(:func:`~fedshift.shift.diagnosis.diagnose`).

Files in ``cfg.out`` (latest statistics round; the history is in ``metrics.json``)::

    reference.npz    Reference.to_arrays() (what was broadcast)
    secure_sum.npz   the decoded sum over sites (``total``) and its layout size
    diagnosis.json   per site: shift types, robust z-scores, evidence, indicators

``metrics.json["federation"]`` (:class:`fedshift.record.FederationRecord`) holds a
summary of each round: participants, total counts, clipped values, embedding counts and
reference means. Every file is written by :class:`fedshift.runstate.RunFolder`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp import Grid

from fedshift.fl import keys
from fedshift.fl.records import to_arrays
from fedshift.fl.secure_sum import deliver_keys, exchange, finish_secure_sum
from fedshift.record import DiagnosisRecord
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder, RunState
from fedshift.secagg.secure import AggregatorSession, SecureSumResult
from fedshift.shift.diagnosis import Diagnosis, diagnose
from fedshift.shift.indicators import SiteIndicators
from fedshift.shift.reference import Reference, build_reference
from fedshift.shift.stats import SiteStatistics, StatsLayout

if TYPE_CHECKING:
    from fedshift.fl.grid import SiteInfo

log = logging.getLogger("fedshift.coordinator")


@dataclass(frozen=True, eq=False)
class StatisticsRound:
    """What the coordinator learned from one secure statistics round.

    Attributes
    ----------
    round_id : names the round (random suffix: keys never carry over)
    stats_round : the global model is the one after this server round (0: initial)
    total : SiteStatistics, the sum over ``result.sites`` (>= min_sites sites)
    result : the secure sum itself (survivors, dropped sites, total clipped count)
    """

    round_id: str
    stats_round: int
    total: SiteStatistics
    result: SecureSumResult


def secure_statistics_round(
    grid: Grid,
    sites: Mapping[int, SiteInfo],
    weights: list[np.ndarray],
    stats_round: int,
    cfg: RunConfig,
    threshold: float | None = None,
) -> StatisticsRound:
    """One secure sum of the sites' statistics under the global ``weights``; the sites
    read the model's predictions at ``threshold`` (the federation's decision threshold;
    their configured one when None).

    Raises
    ------
    SecureAggregationError
        fewer than ``fed.secagg_min_sites`` sites take part, or the round cannot be unmasked.
    """
    secagg = cfg.fed.secagg()
    secagg.check_sites(len(sites), "sites in the federation")
    round_id = f"{cfg.name}/stats-after-{stats_round}/{secrets.token_hex(8)}"
    agg = AggregatorSession(round_id, secagg)
    timeout = cfg.fed.timeout_s
    arrays = to_arrays(weights)
    config: dict[str, str | int | float] = {keys.ROUND_ID: round_id, keys.STATS_ROUND: stats_round}
    if threshold is not None:
        config[keys.THRESHOLD] = float(threshold)
    start = {n: RecordDict({keys.ARRAYS: arrays, keys.CONFIG: ConfigRecord(config)}) for n in sites}
    replies = exchange(grid, start, keys.QUERY_SECAGG_KEYS, round_id, timeout)
    deliver_keys(replies, agg)
    result = finish_secure_sum(grid, agg, timeout)
    total = SiteStatistics.from_vector(result.total, StatsLayout(cfg.seg.model.feat_dim))
    return StatisticsRound(round_id, stats_round, total, result)


def broadcast_reference(
    grid: Grid, sites: Mapping[int, SiteInfo], reference: Reference, round_id: str, cfg: RunConfig
) -> list[SiteIndicators]:
    """Send the reference to every site; their indicators (scalars), in site-name order."""
    arrays = ArrayRecord({k: Array(v) for k, v in reference.to_arrays().items()})
    config = {keys.ROUND_ID: round_id}
    contents = {
        n: RecordDict({keys.REFERENCE: arrays, keys.CONFIG: ConfigRecord(config)}) for n in sites
    }
    replies = exchange(grid, contents, keys.QUERY_REFERENCE, round_id, cfg.fed.timeout_s)
    indicators = []
    for node, content in replies.items():
        values = {k: float(v) for k, v in content.metric_records[keys.INDICATORS].items()}
        known = {k: v for k, v in values.items() if k in SiteIndicators.__dataclass_fields__}
        indicators.append(SiteIndicators(site=sites[node].name, **known))
    return sorted(indicators, key=lambda s: s.site)


def federation_round(
    grid: Grid,
    sites: Mapping[int, SiteInfo],
    state: RunState,
    cfg: RunConfig,
    threshold: float | None = None,
) -> StatisticsRound:
    """Secure statistics under ``state.weights`` -> reference -> diagnosis. ``threshold``:
    the decision threshold the labelled sites tuned in the last round (None before the
    first), where every site reads the model's predictions for the diagnosis.

    Writes reference.npz, secure_sum.npz and diagnosis.json in ``cfg.out`` and appends a
    summary (sums only) to ``state.federation`` (metrics.json).
    """
    if state.weights is None:
        raise ValueError("federation_round needs the global weights in state.weights")
    start = time.perf_counter()
    stats = secure_statistics_round(grid, sites, state.weights, state.last_round, cfg, threshold)
    reference = build_reference(stats.total)
    folder = RunFolder(cfg.out)
    folder.save_arrays("reference.npz", reference.to_arrays())
    folder.save_arrays("secure_sum.npz", {"total": stats.result.total})
    indicators = broadcast_reference(grid, sites, reference, stats.round_id, cfg)
    summed = [sites[n].name if n in sites else str(n) for n in stats.result.sites]
    diagnoses = diagnose(indicators, summed=summed) if len(indicators) >= 3 else []
    if len(indicators) < 3:
        log.warning("shift diagnosis skipped: %d sites reported indicators", len(indicators))
    folder.write_diagnosis(_diagnosis_record(stats, indicators, diagnoses))
    names = {n: s.name for n, s in sites.items()}
    summary = _summary(stats, reference, names, time.perf_counter() - start)
    summary["threshold"] = threshold
    federation = state.record.federation
    federation.statistics.append(summary)
    federation.diagnosis = {d.site: {"shift": d.shift, "evidence": d.evidence} for d in diagnoses}
    for d in diagnoses:
        log.info("diagnosis %-8s %s: %s", d.site, ", ".join(d.shift) or "no shift", d.evidence)
    return stats


def _summary(
    stats: StatisticsRound, reference: Reference, names: Mapping[int, str], seconds: float
) -> dict[str, Any]:
    r = stats.result
    if r.n_clipped:
        log.warning("secure statistics: %d values were clipped; raise fed.secagg_clip", r.n_clipped)
    log.info(
        "secure statistics after round %d: %d sites, %g cases (%g labelled), embeddings %s",
        stats.stats_round,
        len(r.sites),
        stats.total.cases,
        stats.total.labelled_cases,
        {k: int(v) for k, v in reference.counts.items()},
    )
    q = reference.quantile_levels
    return {
        "after_round": stats.stats_round,
        "round_id": stats.round_id,
        "sites": sorted(names.get(s, str(s)) for s in r.sites),
        "dropped": sorted(names.get(s, str(s)) for s in r.dropped),
        "n_clipped": r.n_clipped,
        "cases": stats.total.cases,
        "labelled_cases": stats.total.labelled_cases,
        "embedding_counts": dict(reference.counts),
        "reference_means": {c: g.mean.tolist() for c, g in reference.gaussians.items()},
        "intensity_quantiles": {
            f"p{round(100 * lv):02d}": float(v)
            for lv, v in zip(q, reference.intensity_quantiles, strict=True)
            if round(100 * lv) in (5, 50, 95)
        },
        "seconds": seconds,
    }


def _diagnosis_record(
    stats: StatisticsRound,
    indicators: list[SiteIndicators],
    diagnoses: list[Diagnosis],
) -> DiagnosisRecord:
    by_site = {d.site: d for d in diagnoses}
    return DiagnosisRecord(
        after_round=stats.stats_round,
        round_id=stats.round_id,
        sites={
            ind.site: {
                **(_verdict(by_site[ind.site]) if ind.site in by_site else {"shift": []}),
                "indicators": {k: v for k, v in vars(ind).items() if k != "site"},
            }
            for ind in indicators
        },
    )


def _verdict(d: Diagnosis) -> dict[str, Any]:
    return {k: v for k, v in d.to_dict().items() if k != "site"}
