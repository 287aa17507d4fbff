"""Baselines outside Flower (``fedshift baseline KIND``), for comparison with federated
training.

- ``local``: each labelled site trains alone (same steps as one site in the federation);
  its model is tested on its own test split; the target is scored by every local model
  and the mean is reported.
- ``centralized``: all labelled training data pooled in one place (an upper bound that no
  hospital could run), with the same total number of optimiser steps as the federation.
- ``centralized_jdot``: the same pooled training plus DeepJDOT towards the unlabelled
  target's images (:mod:`fedshift.model.pooled_jdot`): OT alignment against real source
  embeddings, where FedShift only has Gaussians from secure sums.

Each trains in ``fed.rounds`` rounds, round r at the federation's learning rate of round r
(``seg.train.lr_schedule``, :mod:`fedshift.model.schedule`), so schedules are compared like
for like. They write the same run folder and ``metrics.json`` contract as a federated run,
and use :class:`fedshift.site.worker.SiteWorker` for data, training and evaluation, so
every method gets the same preprocessing, augmentation and threshold tuning.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from fedshift.bundle import bundle_from_run
from fedshift.errors import UsageError
from fedshift.model.pooled_jdot import PooledJDOTTrainer
from fedshift.model.trainer import SiteTrainer
from fedshift.policy import federation_threshold
from fedshift.record import FinalRecord, RoundRecord
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder, RunState
from fedshift.site.worker import SiteWorker, site_worker

log = logging.getLogger("fedshift.baselines")


def _workers(cfg: RunConfig) -> list[SiteWorker]:
    return [site_worker(cfg, d) for d in cfg.all_sites]


def _test_all(
    workers: list[SiteWorker], weights: list[np.ndarray]
) -> tuple[dict, dict, float | None]:
    """Test every site with one model: the labelled sites tune their thresholds on
    validation, the targets use their mean (the coordinator's rule, :mod:`fedshift.policy`)."""
    labelled = [w for w in workers if w.layout.has_train_labels]
    val = {w.name: w.evaluate(weights, "val") for w in labelled}
    threshold = federation_threshold(val)
    sites = {w.name: w.evaluate(weights, "test") for w in labelled}
    target = {
        w.name: w.evaluate(weights, "test", threshold)
        for w in workers
        if not w.layout.has_train_labels
    }
    return sites, target, threshold


def run_local(cfg: RunConfig) -> RunState:
    workers = _workers(cfg)
    state = RunState(strategy={"baseline": "local"})
    finals, target_scores = {}, {}
    for w in (w for w in workers if w.layout.has_train_labels):
        trainer = w.trainer()
        for rnd in range(1, cfg.fed.rounds + 1):
            result = trainer.train(round_index=rnd, total_rounds=cfg.fed.rounds)
            log.info("local %s round %d/%d: loss %.4f", w.name, rnd, cfg.fed.rounds, result.loss)
        weights = trainer.get_weights()
        sites, target, _ = _test_all(
            [w] + [t for t in workers if not t.layout.has_train_labels], weights
        )
        finals.update(sites)
        for name, metrics in target.items():
            target_scores.setdefault(name, []).append(metrics)
    mean_target = {
        name: {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
        for name, ms in target_scores.items()
    }
    state.record.final = FinalRecord(
        sites=finals,
        target=mean_target,
        note="target metrics are the mean over the local models of the labelled sites",
    )
    state.last_round = cfg.fed.rounds
    return state


def _pooled_trainer(cfg: RunConfig, workers: list[SiteWorker], kind: str) -> SiteTrainer:
    """One trainer over every labelled site's training cases (``centralized_jdot``: with
    the unlabelled targets' images for the DeepJDOT term)."""
    labelled = [w for w in workers if w.layout.has_train_labels]
    if not labelled:
        raise UsageError(f"baseline {kind} needs at least one labelled site")
    train, val = [], []
    for w in labelled:
        t, v, _ = w.splits()
        train += t
        val += v
    seg, cache = labelled[0].seg, Path(cfg.out) / "centralized" / "cache"
    if kind != "centralized_jdot":
        return SiteTrainer(seg, train, val, cache_dir=cache)
    targets = [w for w in workers if not w.layout.has_train_labels]
    if not targets:
        raise UsageError("baseline centralized_jdot needs an unlabelled target site")
    return PooledJDOTTrainer(
        seg,
        train,
        val,
        cache,
        target_items=[i for w in targets for i in w.unlabelled_items()],
        target_cache_dir=Path(cfg.out) / "centralized" / "target-cache",
    )


def run_centralized(cfg: RunConfig, kind: str = "centralized") -> RunState:
    workers = _workers(cfg)
    trainer = _pooled_trainer(cfg, workers, kind)
    n_labelled = sum(w.layout.has_train_labels for w in workers)
    steps = cfg.seg.train.local_steps * n_labelled  # the federation's total steps per round
    state = RunState(strategy={"baseline": kind})
    for rnd in range(1, cfg.fed.rounds + 1):
        t0 = time.perf_counter()
        result = trainer.train(num_steps=steps, round_index=rnd, total_rounds=cfg.fed.rounds)
        log.info(
            "%s round %d/%d: loss %.4f (%d steps at lr %.3g, %.1f s)",
            kind,
            rnd,
            cfg.fed.rounds,
            result.loss,
            steps,
            result.lr,
            time.perf_counter() - t0,
        )
        pooled = {"train_loss": result.loss, "train_lr": result.lr}
        state.record.rounds.append(RoundRecord(rnd, {"pooled": pooled}))
    state.weights = trainer.get_weights()
    sites, target, threshold = _test_all(workers, state.weights)
    state.record.final = FinalRecord(sites, target, threshold)
    state.last_round = cfg.fed.rounds
    return state


#: baseline name -> runner(cfg, name)
BASELINES = {
    "local": lambda cfg, kind: run_local(cfg),
    "centralized": run_centralized,
    "centralized_jdot": run_centralized,
}


def run_baseline(cfg: RunConfig, kind: str) -> RunState:
    """Run baseline ``kind`` (one of :data:`BASELINES`) and write its run folder.

    A baseline with one final model (``centralized``, ``centralized_jdot``) also ends with
    its checkpoint and a model package at ``RUN/model`` that ``fedshift predict`` and
    ``fedshift evaluate`` take; ``local`` trains one model per site and writes none."""
    if kind not in BASELINES:
        raise UsageError(f"baseline {kind!r} is unknown; valid: {', '.join(BASELINES)}")
    folder = RunFolder(cfg.out)
    folder.write_config(cfg)
    state = BASELINES[kind](cfg, kind)
    folder.write_record(state.record)
    if state.weights is not None:
        folder.save_checkpoint(state)
        log.info("model package: %s", bundle_from_run(folder.root, folder.model_dir))
    return state
