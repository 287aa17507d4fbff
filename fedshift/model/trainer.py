"""Local training and evaluation of one site, as a plain object a Flower client calls.

:class:`SiteTrainer` is built from parts: the data part (:mod:`fedshift.model.data`),
the optimiser part (:meth:`SiteTrainer.make_optimizer`), the loss hook
(:meth:`SiteTrainer.loss`, where alignment adds its term), the step, and a
checkpoint-friendly :meth:`SiteTrainer.state`. A round is reproducible: its randomness
(patch sampling, augmentation, dropout) is reseeded from ``(seed, round)``, so
the same calls from the same weights give the same weights on the CPU.

By default a fresh AdamW is created every round (``train.keep_optimizer_state=False``):
the moments of the previous local trajectory do not carry over to the new global model,
and a round depends only on the weights it starts from, which makes resuming exact.

The learning rate of a round comes from :func:`fedshift.model.schedule.round_lr` (warm-up,
then constant or cosine over the run's rounds) and holds for all the round's steps; the
default (``constant``, no warm-up) is ``train.lr`` every round.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss

from fedshift.model import evaluate as ev
from fedshift.model.config import SegConfig
from fedshift.model.data import IMAGE_KEY, LABEL_KEY, derive_seed, train_dataset, train_loader
from fedshift.model.device import autocast, choose_device, grad_scaler, seeded_torch
from fedshift.model.network import (
    SegNet,
    build_network,
    get_state,
    get_weights,
    set_state,
    set_weights,
)
from fedshift.model.preprocess import MASK_KEY, PreprocessCache
from fedshift.model.schedule import round_lr
from fedshift.shift.intensity import IntensityMap


@dataclass(frozen=True)
class TrainResult:
    """What one call of :meth:`SiteTrainer.train` did.

    ``num_examples`` counts training cases (not batches or patches): FedAvg weights by it.
    ``loss`` is the mean total loss over the steps (proximal term included). ``lr`` is the
    optimiser's learning rate in this round (its first parameter group).
    """

    num_examples: int
    loss: float
    steps: int
    seconds: float
    voxels: int  # patch voxels seen: steps * batch_size * prod(patch_size)
    lr: float

    @property
    def voxels_per_second(self) -> float:
        return self.voxels / self.seconds if self.seconds > 0 else math.nan


def batch_to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Image, label and mask as plain tensors (B, 1, D, H, W) on ``device``; the rest as is.

    Dropping MONAI's MetaTensor wrapper here keeps metadata tracking out of the hot loop.
    """
    out = dict(batch)
    for key in (IMAGE_KEY, LABEL_KEY, MASK_KEY):
        if key in out:
            tensor = torch.as_tensor(out[key]).as_subclass(torch.Tensor)
            out[key] = tensor.to(device, non_blocking=True)
    return out


class SiteTrainer:
    """Train and evaluate one site's :class:`SegNet`.

    Parameters
    ----------
    cfg : all settings.
    items_train : training items (``site_items`` dicts); only labelled ones are used.
    items_val : validation items, for :meth:`tune_threshold` (may be empty).
    cache_dir : folder for this site's preprocessing cache (never the data folder).
    device : overrides ``cfg.train.device`` when given.
    seed : overrides ``cfg.train.seed`` (e.g. a per-site seed): initial weights and every
        round's randomness derive from it.
    intensity_map : the site's own intensity OT map, applied after preprocessing (see
        :class:`~fedshift.model.preprocess.PreprocessCache`); ``None``: standard only.
    """

    def __init__(
        self,
        cfg: SegConfig,
        items_train: Sequence[dict[str, Any]],
        items_val: Sequence[dict[str, Any]],
        cache_dir: str | os.PathLike[str],
        device: str | torch.device | None = None,
        seed: int | None = None,
        intensity_map: IntensityMap | None = None,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.seed = cfg.train.seed if seed is None else int(seed)
        self.device = choose_device(cfg.train.device) if device is None else torch.device(device)
        self.cache = PreprocessCache(cache_dir, cfg.preprocess, intensity_map)
        self.items_train = [dict(item) for item in items_train]
        self.items_val = [dict(item) for item in items_val]
        self.dataset = self.build_dataset(self.items_train)
        self.model: SegNet = build_network(cfg.model, seed=self.seed).to(self.device)
        self.criterion = DiceCELoss(to_onehot_y=True, softmax=True)
        self.threshold = cfg.eval.threshold
        self.rounds_done = 0
        #: the learning rate :meth:`make_optimizer` uses: the current round's (see
        #: :meth:`scheduled_lr`), ``train.lr`` before the first round
        self.lr = cfg.train.lr
        self._last_lr = math.nan
        self._optimizer_state: dict[str, Any] | None = None

    @property
    def num_train_cases(self) -> int:
        return len(self.dataset)

    # -- parts a subclass may override -------------------------------------------------

    def build_dataset(self, items: Sequence[dict[str, Any]]) -> Any:
        """The training dataset (labelled cases, lesion-balanced patches)."""
        return train_dataset(items, self.cfg, self.cache)

    def make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over all parameters at the round's rate :attr:`lr` (``train.lr`` under the
        default schedule) with ``train.weight_decay``."""
        tc = self.cfg.train
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=tc.weight_decay)

    def loss(
        self, batch: dict[str, Any], features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """The training loss of one batch: Dice + cross-entropy (MONAI ``DiceCELoss``).

        Parameters
        ----------
        batch : ``image``, ``label``, ``brain`` as (B, 1, D, H, W) tensors on the device.
        features : embeddings g(x), (B, F, D, H, W).
        logits : f(g(x)), (B, 2, D, H, W).

        Override to add a term (e.g. the OT alignment on ``features``); call ``super()``.
        """
        return self.criterion(logits, batch[LABEL_KEY])

    # -- training -------------------------------------------------------------------

    def proximal_term(self, anchor: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``sum ||w - w_anchor||^2`` over the trainable parameters (FedProx uses mu/2 of it)."""
        total = torch.zeros((), device=self.device)
        for name, param in self.model.named_parameters():
            total = total + torch.sum((param.float() - anchor[name]) ** 2)
        return total

    def scheduled_lr(self, round_number: int, total_rounds: int | None) -> float:
        """The learning rate of round ``round_number`` (1-based) of ``total_rounds``
        (:func:`~fedshift.model.schedule.round_lr` with the ``train`` settings).

        The default schedule (``constant``, no warm-up) is ``train.lr`` whatever the round
        numbers, so callers that count rounds from 0 or do not know the run's length keep
        training as before."""
        tc = self.cfg.train
        if tc.lr_schedule == "constant" and tc.warmup_rounds == 0:
            return tc.lr
        return round_lr(
            round_number, total_rounds, tc.lr, tc.lr_schedule, tc.warmup_rounds, tc.lr_min
        )

    def train(
        self,
        num_steps: int | None = None,
        global_weights: Sequence[np.ndarray] | None = None,
        proximal_mu: float = 0.0,
        round_index: int | None = None,
        total_rounds: int | None = None,
    ) -> TrainResult:
        """Run ``num_steps`` optimiser steps (``train.local_steps`` when None).

        Parameters
        ----------
        global_weights : when given, loaded first and used as the FedProx anchor.
        proximal_mu : FedProx weight; the loss gains ``mu / 2 * ||w - w_global||^2``.
        round_index : seeds this round's randomness with ``(seed, round_index)``;
            defaults to the number of rounds this trainer has run. Pass the server round
            for runs that resume. It is also the round of the learning-rate schedule
            (1-based; ``rounds_done + 1`` when None).
        total_rounds : the run's number of rounds (``fed.rounds``), which the ``cosine``
            schedule needs; ignored by ``constant``.
        """
        steps = self.cfg.train.local_steps if num_steps is None else int(num_steps)
        if steps < 1:
            raise ValueError(f"num_steps={num_steps!r} is invalid: expected >= 1")
        number = self.rounds_done + 1 if round_index is None else round_index
        self.lr = self.scheduled_lr(number, total_rounds)
        if global_weights is not None:
            self.set_weights(global_weights)
        anchor = self._anchor() if proximal_mu > 0 else None
        seed = derive_seed(self.seed, self.rounds_done if round_index is None else round_index)
        start = time.perf_counter()
        with seeded_torch(seed, self.device):
            total = self._run_steps(steps, seed, anchor, float(proximal_mu))
        seconds = time.perf_counter() - start
        self.rounds_done += 1
        tc = self.cfg.train
        return TrainResult(
            num_examples=self.num_train_cases,
            loss=total / steps,
            steps=steps,
            seconds=seconds,
            voxels=steps * tc.batch_size * int(np.prod(tc.patch_size)),
            lr=self._last_lr,
        )

    def _anchor(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().float().clone() for n, p in self.model.named_parameters()}

    def _run_steps(
        self, steps: int, seed: int, anchor: Mapping[str, torch.Tensor] | None, mu: float
    ) -> float:
        """The loop part: returns the summed loss of ``steps`` steps."""
        optimizer = self.make_optimizer()
        if self.cfg.train.keep_optimizer_state and self._optimizer_state is not None:
            rates = [group["lr"] for group in optimizer.param_groups]
            optimizer.load_state_dict(self._optimizer_state)
            for group, rate in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = rate  # this round's rate, not the one the state was saved at
        self._last_lr = float(optimizer.param_groups[0]["lr"])
        scaler = grad_scaler(self.device, self.cfg.train.amp)
        pin = self.device.type == "cuda"
        loader = train_loader(self.dataset, self.cfg.train, steps, seed, pin_memory=pin)
        self.model.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for batch in loader:
            total += self.step(batch_to_device(batch, self.device), optimizer, scaler, anchor, mu)
        if self.cfg.train.keep_optimizer_state:
            self._optimizer_state = copy.deepcopy(optimizer.state_dict())
        return float(total)

    def step(
        self,
        batch: dict[str, Any],
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        anchor: Mapping[str, torch.Tensor] | None = None,
        mu: float = 0.0,
    ) -> torch.Tensor:
        """One optimiser update; returns the detached loss (a 0-d tensor on the device)."""
        optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.cfg.train.amp):
            features = self.model.features(batch[IMAGE_KEY])
            logits = self.model.head(features)
            loss = self.loss(batch, features, logits)
        loss = loss.float()
        if anchor is not None and mu > 0:
            loss = loss + 0.5 * mu * self.proximal_term(anchor)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    # -- evaluation -----------------------------------------------------------------

    def evaluate(
        self, items: Sequence[dict[str, Any]], threshold: float | None = None
    ) -> dict[str, float]:
        """Mean metrics over the labelled ``items`` (dice, lesion_precision, lesion_recall,
        lesion_f1, avd in mL, avd_percent, n_cases, threshold); ``threshold`` defaults to
        the tuned one. Per-case values: :meth:`evaluate_cases`."""
        result = self.evaluate_cases(items, threshold)
        return {**result.mean, "threshold": result.threshold}

    def evaluate_cases(
        self, items: Sequence[dict[str, Any]], threshold: float | None = None
    ) -> ev.EvalResult:
        """Metrics per case and their means (per-case values stay at the site)."""
        cut = self.threshold if threshold is None else float(threshold)
        return ev.evaluate_items(self.model, items, self.cache, self.cfg, self.device, cut)

    def tune_threshold(self, items_val: Sequence[dict[str, Any]] | None = None) -> float:
        """Set and return the threshold with the best mean Dice on the validation items
        (the trainer's ``items_val`` when None); unchanged when none is labelled."""
        items = self.items_val if items_val is None else items_val
        threshold, _ = ev.tune_threshold(self.model, items, self.cache, self.cfg, self.device)
        self.threshold = threshold
        return threshold

    def predict_proba(self, item: dict[str, Any]) -> torch.Tensor:
        """Lesion probability (X, Y, Z) of one item's preprocessed image."""
        _, prob = next(ev.iter_predictions(self.model, [item], self.cache, self.cfg, self.device))
        return prob

    # -- weights and checkpoints ----------------------------------------------------------

    def get_weights(self) -> list[np.ndarray]:
        """The model's arrays (state_dict order, buffers included, float32).

        These leave the site."""
        return get_weights(self.model)

    def set_weights(self, arrays: Sequence[np.ndarray]) -> None:
        set_weights(self.model, arrays)

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, threshold, rounds run, and the
        AdamW state when ``train.keep_optimizer_state``."""
        return {
            "model": get_state(self.model),
            "threshold": self.threshold,
            "rounds_done": self.rounds_done,
            "optimizer": copy.deepcopy(self._optimizer_state),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        set_state(self.model, state["model"])
        self.threshold = float(state["threshold"])
        self.rounds_done = int(state["rounds_done"])
        self._optimizer_state = copy.deepcopy(state.get("optimizer"))
