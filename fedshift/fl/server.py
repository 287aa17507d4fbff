"""The coordinator's loop (Flower ServerApp main), with readiness gate and resume.

Per run: wait for the sites -> ``query.readiness`` round -> for each round: train (the
aggregator's ``configure_train`` / ``aggregate_train``, :mod:`fedshift.fl.strategies`)
-> evaluate on validation splits -> checkpoint + metrics.json. After the last round:
evaluate on every site's test split (target sites included, on their labelsTs). With
``fed.secure_stats``, a secure statistics round (:mod:`fedshift.fl.secure_rounds`) runs
before round 1 (the reference that intensity alignment needs) and after the last round
(the shift diagnosis of the final model), and between rounds with
``fed.stats_every_round`` or in rounds that align embeddings (``seg.align.method``).
Flower has no checkpoint/resume of its own: ``resume=true`` continues after the last
checkpointed round, with the aggregator's state of that round (a server optimiser's
momentum and moments: ``Coordinated.state_arrays``). With ``fed.secure_updates`` a
training round is a secure sum (:mod:`fedshift.fl.secure_updates`). The run ends with
the final model as a package in ``RUN/model`` and at every site
(:mod:`fedshift.fl.final_model`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedshift import policy
from fedshift.errors import ConfigError, FedShiftError
from fedshift.fl import keys
from fedshift.fl.final_model import finish_with_package
from fedshift.fl.grid import SiteInfo, query_readiness, send, wait_for_nodes
from fedshift.fl.records import from_arrays, reply_metrics, reply_site, to_arrays
from fedshift.fl.secure_rounds import federation_round
from fedshift.fl.secure_updates import secure_train_round
from fedshift.fl.strategies import make_strategy
from fedshift.fl.strategies.base import Coordinated
from fedshift.model.network import build_network, get_weights
from fedshift.record import FinalRecord, Metrics, RoundRecord, SiteReadiness
from fedshift.runconfig import RunConfig, expected_sites
from fedshift.runstate import RunFolder, RunState

log = logging.getLogger("fedshift.coordinator")


def evaluate_round(
    grid: Grid,
    sites: dict[int, SiteInfo],
    weights: list[np.ndarray],
    split: str,
    threshold: float | None,
    timeout_s: float,
    bures: bool = False,
) -> dict[str, dict[str, float]]:
    """Evaluate the global model on every site; returns site -> metrics. ``threshold``
    goes to the sites without labels (the others tune their own on validation)."""
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


def train_round(
    grid: Grid, strategy: Coordinated, rnd: int, weights: list[np.ndarray], cfg: RunConfig
) -> tuple[list[np.ndarray], dict[str, dict[str, float]]]:
    """One Flower training round: the strategy picks the sites and their settings, the
    sites train, the strategy aggregates. Returns the new weights and site -> metrics
    (with the FedAvg weight the coordinator set, and ``refused`` = 1 for a site whose
    update the strategy left out)."""
    messages = list(strategy.configure_train(rnd, to_arrays(weights), ConfigRecord({}), grid))
    replies = send(grid, messages, cfg.fed.timeout_s, f"train round {rnd}")
    arrays, _ = strategy.aggregate_train(rnd, replies)
    policy.check_round_updates(cfg, rnd, len(replies) - len(strategy.refused), len(messages))
    if arrays is None:
        raise FedShiftError(f"round {rnd}: no site returned a model update that was accepted")
    metrics = {reply_site(r.content): reply_metrics(r.content) for r in replies}
    for site in strategy.refused:  # NaN, infinite or outsized: logged by the strategy
        metrics[site]["refused"] = 1.0
    return from_arrays(arrays), metrics


def final_evaluation(
    grid: Grid, sites: dict[int, SiteInfo], weights: list[np.ndarray], cfg: RunConfig, bures=False
) -> FinalRecord:
    """Test metrics of the final model: validation tunes each labelled site's threshold,
    their mean (:func:`fedshift.policy.federation_threshold`) scores the sites without
    labels. With ``bures``, each site applies its Bures-Wasserstein map before the head."""
    timeout = cfg.fed.timeout_s
    val = evaluate_round(grid, sites, weights, "val", None, timeout, bures)
    threshold = policy.federation_threshold(val, keys.NUM_EXAMPLES)
    test = evaluate_round(grid, sites, weights, "test", threshold, timeout, bures)
    if not test:
        raise FedShiftError("final evaluation: no site replied; see the site errors above")
    labelled = {s.name for s in sites.values() if s.labelled}
    return FinalRecord(
        sites={k: v for k, v in test.items() if k in labelled},
        target={k: v for k, v in test.items() if k not in labelled},
        target_threshold=threshold,
    )


def run_coordinator(grid: Grid, cfg: RunConfig) -> RunState:
    """The whole federated run; returns the final state (also on disk in ``cfg.out``)."""
    started = time.perf_counter()
    folder = RunFolder(cfg.out)
    if cfg.resume:
        folder.check_resumable(cfg)
    folder.write_config(cfg)
    sites, timing = connect_sites(grid, cfg)
    state = start_state(folder, cfg)
    strategy = make_strategy(cfg, sites)
    if not strategy.trainer_nodes:
        raise FedShiftError(f"no site reaches training level {cfg.fed.train_level}")
    if cfg.fed.secure_updates:
        cfg.fed.secagg().check_sites(len(strategy.trainer_nodes), "training sites (secure updates)")
    record_sites(state, sites, strategy)
    first = state.last_round + 1
    for rnd in range(first, cfg.fed.rounds + 1):
        run_round(grid, sites, state, strategy, cfg, rnd, statistics_first=rnd == first)
        folder.save_checkpoint(state)
        folder.write_record(state.record)
    finish(grid, sites, state, strategy, cfg)
    t_package = time.perf_counter()
    finish_with_package(grid, folder, state, sites, strategy.val_dice, cfg)
    state.record.timing["model_package_s"] = time.perf_counter() - t_package
    state.record.timing = {
        **timing,
        **state.record.timing,
        "serverapp_s": time.perf_counter() - started,
    }
    folder.write_record(state.record)
    return state


def connect_sites(grid: Grid, cfg: RunConfig) -> tuple[dict[int, SiteInfo], dict[str, float]]:
    """Wait for the sites, then ask each for its readiness; returns node -> site and the
    seconds both took."""
    started = time.perf_counter()
    nodes = wait_for_nodes(grid, cfg.fed.min_sites or expected_sites(cfg), cfg.fed.node_wait_s)
    connected = time.perf_counter()
    sites = query_readiness(grid, nodes, cfg.fed.timeout_s)
    if cfg.fed.enrolled_sites:
        sites = enrolled_only(sites, cfg.fed.enrolled_sites)
    for info in sorted(sites.values(), key=lambda s: s.name):
        log.info(
            "site %s: level %s, %d/%d cases usable%s",
            info.name,
            info.level,
            info.n_usable,
            info.n_cases,
            "" if info.labelled else " (unlabelled)",
        )
    timing = {
        "wait_for_sites_s": connected - started,
        "readiness_s": time.perf_counter() - connected,
    }
    return sites, timing


def enrolled_only(sites: dict[int, SiteInfo], enrolled_json: str) -> dict[int, SiteInfo]:
    """The sites whose node id and name match the coordinator's enrolment
    (:func:`fedshift.policy.enrolment_refusals`); the others are logged and left out of the
    run (the SuperLink already refuses keys it has not enrolled: this is the ServerApp's
    own check of the same list).

    Raises
    ------
    ConfigError
        ``enrolled_json`` is missing or not a JSON object of site name -> node id.
    """
    path = Path(enrolled_json)
    try:
        enrolled = json.loads(path.read_text())
        if not isinstance(enrolled, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"fed.enrolled_sites={enrolled_json!r}: cannot read the enrolment ({exc}); it is "
            "the enrolled.json that `fedshift coordinator` writes in its state folder"
        ) from None
    ids = {str(k): (None if v is None else int(v)) for k, v in enrolled.items()}
    refused = policy.enrolment_refusals({n: s.name for n, s in sites.items()}, ids)
    for node, why in refused.items():
        log.error("node %d refused: %s (%s)", node, why, path)
    return {n: s for n, s in sites.items() if n not in refused}


def start_state(folder: RunFolder, cfg: RunConfig) -> RunState:
    """The checkpointed state on resume, else round 0 with freshly initialised weights."""
    state = (folder.load_checkpoint() if cfg.resume else None) or RunState()
    if state.weights is None:
        state.weights = get_weights(build_network(cfg.seg.model, seed=cfg.seed))
    else:
        log.info("resuming after round %d from %s", state.last_round, folder.checkpoints)
    return state


def record_sites(state: RunState, sites: dict[int, SiteInfo], strategy: Coordinated) -> None:
    """The sites' readiness answers and the strategy's description in the record; a
    resumed run's strategy sees the last checkpointed round's validation and takes back
    its own state of that round."""
    training = strategy.trainer_nodes | strategy.adapter_nodes
    state.record.readiness = {
        s.name: SiteReadiness(s.level, s.n_cases, s.n_usable, n in training)
        for n, s in sites.items()
    }
    state.strategy = strategy.describe(sites)
    if state.record.rounds:
        strategy.observe_validation(state.record.last_validation())
    strategy.load_state(state.strategy_state)
    if strategy.dp is not None:  # each checkpointed round released one noised mean
        strategy.dp.releases = state.last_round


def run_round(
    grid: Grid,
    sites: dict[int, SiteInfo],
    state: RunState,
    strategy: Coordinated,
    cfg: RunConfig,
    rnd: int,
    statistics_first: bool,
) -> None:
    """Round ``rnd``: [secure statistics] -> train -> validate; appends its record.

    A statistics round runs before the run's first round and, with
    ``fed.stats_every_round`` or when this round aligns embeddings, before every round,
    so that the reference describes the current model's embeddings."""
    will_align = policy.aligns(cfg, rnd, strategy.val_dice)
    if cfg.aligns_embeddings:
        log.info("round %d: %s", rnd, "aligned" if will_align else "FedAvg (alignment waits)")
    if cfg.fed.secure_stats and (statistics_first or cfg.fed.stats_every_round or will_align):
        federation_round(grid, sites, state, cfg, strategy.threshold)
    t0 = time.perf_counter()
    assert state.weights is not None  # set by start_state
    train = secure_train_round if cfg.fed.secure_updates else train_round
    state.weights, train_metrics = train(grid, strategy, rnd, state.weights, cfg)
    state.strategy_state = strategy.state_arrays()
    if strategy.dp is not None:
        state.record.privacy = strategy.dp.record()
        log.info(
            "round %d: differential privacy spent epsilon %.3g at delta %g",
            rnd,
            state.record.privacy.epsilon,
            state.record.privacy.delta,
        )
    t1 = time.perf_counter()
    val = evaluate_round(grid, sites, state.weights, "val", None, cfg.fed.timeout_s)
    strategy.observe_validation(val)
    per_site: dict[str, Metrics] = {
        name: {
            **{f"val_{k}": v for k, v in val.get(name, {}).items()},
            **{f"train_{k}": v for k, v in train_metrics.get(name, {}).items()},
        }
        for name in sorted({s.name for s in sites.values()})
    }
    seconds = {"train": t1 - t0, "evaluate": time.perf_counter() - t1}
    state.record.rounds.append(RoundRecord(rnd, per_site, seconds, strategy.aligned))
    state.last_round = rnd
    for name, m in per_site.items():
        log.info(
            "round %d/%d %-8s loss %s  val dice %s",
            rnd,
            cfg.fed.rounds,
            name,
            _fmt(m.get("train_loss")),
            _fmt(m.get("val_dice")),
        )


def finish(
    grid: Grid,
    sites: dict[int, SiteInfo],
    state: RunState,
    strategy: Coordinated,
    cfg: RunConfig,
) -> None:
    """After the last round: the final model's statistics (the run's shift diagnosis),
    then its test metrics (and, with secure statistics, each site's Bures map's)."""
    assert state.weights is not None
    if cfg.fed.secure_stats:
        federation_round(grid, sites, state, cfg, strategy.threshold)
    t_final = time.perf_counter()
    final = final_evaluation(grid, sites, state.weights, cfg)
    if cfg.fed.secure_stats:
        final.bures = final_evaluation(grid, sites, state.weights, cfg, bures=True)
    state.record.final = final
    state.record.timing["final_evaluation_s"] = time.perf_counter() - t_final


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
