"""The coordinator's loop (Flower ServerApp main), with readiness gate and resume.

Per run: wait for the sites -> ``query.readiness`` round -> for each round: train
(Flower strategy: configure_train / aggregate_train) -> evaluate on validation splits ->
checkpoint + metrics.json. After the last round: evaluate on every site's test split
(target sites included, on their labelsTs). With ``fed.secure_stats``, a secure statistics
round (:mod:`fedshift.fl.secure_rounds`) runs before round 1 (the reference that intensity
alignment needs) and after the last round (the shift diagnosis of the final model), and
between rounds with ``fed.stats_every_round`` or an aligned strategy (``fedshift``,
``moments``). Flower has no checkpoint/resume of its own:
``resume=true`` continues after the last checkpointed round.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx, Strategy

from fedshift.errors import ConfigError, FedShiftError
from fedshift.fl import keys
from fedshift.fl.grid import SiteInfo, by_site, query_readiness, send, wait_for_nodes
from fedshift.fl.records import from_arrays, reply_metrics, reply_site, to_arrays
from fedshift.fl.secure_rounds import federation_round
from fedshift.model.network import build_network, get_weights
from fedshift.runconfig import ALIGNED, RunConfig, expected_sites, level_at_least
from fedshift.runstate import RunFolder, RunState

log = logging.getLogger("fedshift.coordinator")


def _fedavg(cfg: RunConfig, n: int) -> Strategy:
    return FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=n,
        min_available_nodes=n,
        weighted_by_key=keys.FEDAVG_WEIGHT,
    )


def _fedprox(cfg: RunConfig, n: int) -> Strategy:
    return FedProx(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=n,
        min_available_nodes=n,
        proximal_mu=cfg.fed.proximal_mu,
        weighted_by_key=keys.FEDAVG_WEIGHT,
    )


#: strategy name -> factory(cfg, number of training sites); Flower's own strategies. The
#: aligned ones aggregate as FedAvg: their difference is the sites' loss (an alignment term
#: against the reference, :mod:`fedshift.model.aligned`) and that unlabelled sites train.
STRATEGIES: dict[str, Callable[[RunConfig, int], Strategy]] = {
    "fedavg": _fedavg,
    "fedprox": _fedprox,
    "moments": _fedavg,
    "fedshift": _fedavg,
}


def make_strategy(cfg: RunConfig, n_train_sites: int) -> Strategy:
    try:
        factory = STRATEGIES[cfg.fed.strategy]
    except KeyError:
        raise ConfigError(
            f"strategy {cfg.fed.strategy!r} does not run in Flower; "
            f"federated strategies: {', '.join(STRATEGIES)}"
        ) from None
    return factory(cfg, n_train_sites)


def evaluate_round(
    grid: Grid,
    sites: dict[int, SiteInfo],
    weights: list[np.ndarray],
    split: str,
    threshold: float | None,
    timeout_s: float,
    bures: bool = False,
) -> dict[str, dict[str, float]]:
    """Evaluate the global model on every site; returns site -> metrics."""
    msgs = []
    for node, info in sorted(sites.items(), key=lambda kv: kv[1].name):
        config = ConfigRecord({keys.SPLIT: split, keys.SERVER_ROUND: 0, keys.BURES: bures})
        if threshold is not None and not info.labelled:
            config[keys.THRESHOLD] = float(threshold)
        msgs.append(
            Message(
                RecordDict({keys.ARRAYS: to_arrays(weights), keys.CONFIG: config}),
                dst_node_id=node,
                message_type=keys.EVALUATE,
            )
        )
    return {
        reply_site(r.content): reply_metrics(r.content)
        for r in send(grid, msgs, timeout_s, f"evaluate {split}")
    }


def mean_threshold(site_metrics: dict[str, dict[str, float]]) -> float | None:
    """Mean of the thresholds the labelled sites tuned (used by sites without labels)."""
    values = [
        m["threshold"]
        for m in site_metrics.values()
        if m.get(keys.NUM_EXAMPLES, 0) > 0 and math.isfinite(m.get("threshold", math.nan))
    ]
    return float(np.mean(values)) if values else None


def _last_val(state: RunState) -> dict[str, dict[str, float]]:
    """Site -> validation metrics of the last finished round (empty before the first)."""
    if not state.rounds:
        return {}
    return {
        site: {k.removeprefix("val_"): v for k, v in m.items() if k.startswith("val_")}
        for site, m in state.rounds[-1]["sites"].items()
    }


def last_val_dice(state: RunState) -> float | None:
    """Mean validation Dice of the labelled sites in the last finished round."""
    values = [
        m["dice"]
        for m in _last_val(state).values()
        if m.get(keys.NUM_EXAMPLES, 0) > 0 and math.isfinite(m.get("dice", math.nan))
    ]
    return float(np.mean(values)) if values else None


def aligns(cfg: RunConfig, rnd: int, state: RunState) -> bool:
    """Whether round ``rnd`` of an aligned strategy uses its alignment term: from
    ``fed.align_from_round`` on, once the model of the round before reached
    ``fed.align_min_val_dice`` on the labelled sites' validation cases."""
    if cfg.fed.strategy not in ALIGNED or rnd < cfg.fed.align_from_round:
        return False
    dice = last_val_dice(state)
    return dice is not None and dice >= cfg.fed.align_min_val_dice


def last_threshold(state: RunState) -> float | None:
    """The threshold of the last finished round's validation (a resumed run goes on with
    it), ``None`` before the first."""
    return mean_threshold(_last_val(state)) if state.rounds else None


def set_fedavg_weights(replies: Iterable[Message], scale: Mapping[int, float]) -> None:
    """Write the weight FedAvg averages each reply's update with (``keys.FEDAVG_WEIGHT``):
    the site's training cases times ``scale`` of its node (1 where absent). The coordinator
    sets it, so a site cannot choose its own weight beyond its case count."""
    for reply in replies:
        metrics = reply.content.metric_records[keys.METRICS]
        factor = scale.get(reply.metadata.src_node_id, 1.0)
        metrics[keys.FEDAVG_WEIGHT] = float(metrics[keys.NUM_EXAMPLES]) * factor


def train_round(
    grid: Grid,
    strategy: Strategy,
    rnd: int,
    weights: list[np.ndarray],
    trainers: set[int],
    cfg: RunConfig,
    threshold: float | None = None,
    align: bool = False,
    scale: Mapping[int, float] | None = None,
) -> tuple[list[np.ndarray], dict[str, dict[str, float]]]:
    """One Flower training round restricted to the sites that passed the readiness gate.

    ``threshold``: the decision threshold the labelled sites tuned in the previous round;
    a site without labels reads its own lesion labels off the model with it. ``align``:
    the sites add their alignment term (moments, fedshift) this round. ``scale``: node ->
    factor on its FedAvg weight (:func:`set_fedavg_weights`)."""
    config = ConfigRecord({keys.ALIGN: align})
    if threshold is not None:
        config[keys.THRESHOLD] = float(threshold)
    messages = [
        m
        for m in strategy.configure_train(rnd, to_arrays(weights), config, grid)
        if m.metadata.dst_node_id in trainers
    ]
    replies = by_site(send(grid, messages, cfg.fed.timeout_s, f"train round {rnd}"))
    set_fedavg_weights(replies, scale or {})
    arrays, _ = strategy.aggregate_train(rnd, replies)
    if arrays is None:
        raise FedShiftError(f"round {rnd}: no site returned a model update")
    return from_arrays(arrays), {reply_site(r.content): reply_metrics(r.content) for r in replies}


def run_coordinator(grid: Grid, cfg: RunConfig) -> RunState:
    """The whole federated run; returns the final state (also on disk in ``cfg.out``)."""
    started = time.perf_counter()
    folder = RunFolder(cfg.out)
    if cfg.resume:
        folder.check_resumable(cfg)
    folder.write_config(cfg)
    nodes = wait_for_nodes(grid, cfg.fed.min_sites or expected_sites(cfg), cfg.fed.node_wait_s)
    connected = time.perf_counter()
    sites = query_readiness(grid, nodes, cfg.fed.timeout_s)
    state_timing = {
        "wait_for_sites_s": connected - started,
        "readiness_s": time.perf_counter() - connected,
    }
    for info in sorted(sites.values(), key=lambda s: s.name):
        log.info(
            "site %s: level %s, %d/%d cases usable%s",
            info.name,
            info.level,
            info.n_usable,
            info.n_cases,
            "" if info.labelled else " (unlabelled)",
        )
    trainers = {
        n for n, s in sites.items() if s.labelled and level_at_least(s.level, cfg.fed.train_level)
    }
    # sites without labels adapt on the alignment term alone, once alignment has started
    adapters = set()
    if cfg.fed.strategy in ALIGNED:
        adapters = {n for n, s in sites.items() if not s.labelled and level_at_least(s.level, "B")}
    if not trainers:
        raise FedShiftError(f"no site reaches training level {cfg.fed.train_level}")
    state = (folder.load_checkpoint() if cfg.resume else None) or RunState()
    if state.weights is None:
        state.weights = get_weights(build_network(cfg.seg.model, seed=cfg.seed))
    else:
        log.info("resuming after round %d from %s", state.last_round, folder.checkpoints)
    state.readiness = {
        s.name: {
            "level": s.level,
            "n_cases": s.n_cases,
            "n_usable": s.n_usable,
            "trains": n in trainers | adapters,
        }
        for n, s in sites.items()
    }
    strategy = make_strategy(cfg, len(trainers | adapters))
    state.strategy = {
        "name": cfg.fed.strategy,
        "state": "stateless between rounds (FedAvg aggregation; the reference is on disk)",
        "trainers": sorted(sites[n].name for n in trainers | adapters),
    }
    first = state.last_round + 1
    threshold = last_threshold(state)
    for rnd in range(first, cfg.fed.rounds + 1):
        # secure stats -> reference -> diagnosis; an aligned strategy refreshes its
        # reference every aligned round, so that it describes the current model's embeddings
        align = aligns(cfg, rnd, state)
        if cfg.fed.strategy in ALIGNED:
            log.info("round %d: %s", rnd, "aligned" if align else "FedAvg (alignment waits)")
        refresh = cfg.fed.stats_every_round or align
        if cfg.fed.secure_stats and (rnd == first or refresh):
            federation_round(grid, sites, state, cfg, threshold)
        t0 = time.perf_counter()
        state.weights, train_metrics = train_round(
            grid,
            strategy,
            rnd,
            state.weights,
            trainers | adapters if align else trainers,
            cfg,
            threshold,
            align,
            {n: cfg.fed.unlabelled_weight for n in adapters},
        )
        t1 = time.perf_counter()
        val = evaluate_round(grid, sites, state.weights, "val", None, cfg.fed.timeout_s)
        threshold = mean_threshold(val)
        per_site = {
            name: {
                **{f"val_{k}": v for k, v in val.get(name, {}).items()},
                **{f"train_{k}": v for k, v in train_metrics.get(name, {}).items()},
            }
            for name in sorted({s.name for s in sites.values()})
        }
        state.rounds.append(
            {
                "round": rnd,
                "sites": per_site,
                "seconds": {"train": t1 - t0, "evaluate": time.perf_counter() - t1},
                "aligned": align,
            }
        )
        for name, m in per_site.items():
            log.info(
                "round %d/%d %-8s loss %s  val dice %s",
                rnd,
                cfg.fed.rounds,
                name,
                _fmt(m.get("train_loss")),
                _fmt(m.get("val_dice")),
            )
        state.last_round = rnd
        folder.save_checkpoint(state)
        folder.write_metrics(state)
    if cfg.fed.secure_stats:  # the final model's statistics: the run's shift diagnosis
        federation_round(grid, sites, state, cfg, last_threshold(state))
    t_final = time.perf_counter()
    state.final = final_evaluation(grid, sites, state, cfg)
    if cfg.fed.secure_stats:  # the same model, each site's Bures map before the head
        state.final["bures"] = final_evaluation(grid, sites, state, cfg, bures=True)
    state.timing = {
        **state_timing,
        "final_evaluation_s": time.perf_counter() - t_final,
        "serverapp_s": time.perf_counter() - started,
    }
    folder.write_metrics(state)
    return state


def final_evaluation(
    grid: Grid, sites: dict[int, SiteInfo], state: RunState, cfg: RunConfig, bures: bool = False
) -> dict:
    """Test metrics of the final model; with ``bures``, each site applies its
    Bures-Wasserstein map before the head (thresholds tuned likewise)."""
    timeout = cfg.fed.timeout_s
    val = evaluate_round(grid, sites, state.weights, "val", None, timeout, bures)
    threshold = mean_threshold(val)
    test = evaluate_round(grid, sites, state.weights, "test", threshold, timeout, bures)
    if not test:
        raise FedShiftError("final evaluation: no site replied; see the site errors above")
    labelled = {s.name for s in sites.values() if s.labelled}
    return {
        "sites": {k: v for k, v in test.items() if k in labelled},
        "target": {k: v for k, v in test.items() if k not in labelled},
        "target_threshold": threshold,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
