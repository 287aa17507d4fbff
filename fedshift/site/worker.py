"""What a hospital does in a federated run, as plain calls: no Flower in here.

The Flower ClientApp (``sites/client_app.py`` through :mod:`fedshift.fl.client`) turns each
message into one call of :class:`SiteWorker`. A SuperNode starts a new process per
message, so everything that must survive between rounds lives on disk in ``work_dir``
(readiness report, preprocessing cache); nothing is kept in memory.

What leaves the site: model weights, the number of training cases, aggregate metrics
(loss, mean Dice...), the readiness level and case counts. Never images, labels, per-case
values or file names.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedshift.data.layout import discover_site, site_items
from fedshift.errors import DataError, SiteError, UsageError
from fedshift.model import evaluate as ev
from fedshift.model.aligned import AlignedTrainer
from fedshift.model.config import SegConfig
from fedshift.model.data import derive_seed, split_train_val
from fedshift.model.device import choose_device
from fedshift.model.network import build_network, fold_affine_into_head, set_weights
from fedshift.model.preprocess import PreprocessCache
from fedshift.model.trainer import SiteTrainer
from fedshift.readiness.runner import usable_cases
from fedshift.runconfig import RunConfig
from fedshift.shift.calibration import Calibration
from fedshift.shift.diagnosis import measure
from fedshift.shift.distances import AffineMap, bures_map
from fedshift.shift.embeddings import gaussian_from
from fedshift.shift.indicators import SiteIndicators
from fedshift.shift.intensity import IntensityMap, quantile_map
from fedshift.shift.reference import Reference
from fedshift.site.calibration import measure_calibration
from fedshift.site.files import ShiftFolder
from fedshift.site.folders import site_work_dir
from fedshift.site.overlay import write_overlay
from fedshift.site.readiness import Readiness, cached_readiness, training_spacing
from fedshift.site.stats import LocalStatistics, site_statistics

log = logging.getLogger(__name__)

#: the splits :meth:`SiteWorker.evaluate` measures
SPLITS = ("val", "test")


@dataclass(frozen=True)
class TrainOutcome:
    weights: list[np.ndarray]
    num_examples: int  # training cases, the FedAvg weight
    metrics: dict[str, float]


class SiteWorker:
    """One site's data, readiness, training and evaluation.

    Parameters
    ----------
    data_dir : the site folder (nnU-Net v2 raw layout). Read only.
    work_dir : the site's private working folder (readiness report, preprocessing cache).
    seg : model / preprocessing / training settings.
    seed : the run's seed; the site's own streams derive from it and the site name.
    cache_dir : preprocessing cache (default ``work_dir/cache``); entries are keyed by file
        content and preprocessing settings, so runs can share it.
    align_intensity : map brain intensities onto the federation's histogram after
        preprocessing, with the map fitted when the reference arrives
        (:meth:`receive_reference`); until then, standard preprocessing only.
    alignment : ``None``, ``"jdot"`` or ``"moments"``: train with that alignment term
        against the latest reference (:class:`~fedshift.model.aligned.AlignedTrainer`);
        a site without labels then trains too, on that term alone.
    rounds : the run's number of federated rounds (``fed.rounds``), the length of the
        learning-rate schedule (``seg.train.lr_schedule``); needed by ``cosine`` only.
    """

    def __init__(
        self,
        data_dir: str | Path,
        work_dir: str | Path,
        seg: SegConfig,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        align_intensity: bool = False,
        alignment: str | None = None,
        rounds: int | None = None,
    ) -> None:
        self.layout = discover_site(data_dir)
        self.name = self.layout.name
        self.work_dir = Path(work_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.work_dir / "cache"
        self.align_intensity = align_intensity
        self.alignment = alignment
        self.rounds = rounds
        self.shift = ShiftFolder(self.work_dir)
        self.seed = derive_seed(seed, zlib.crc32(self.name.encode()))
        self.seg = replace(seg, train=replace(seg.train, seed=self.seed))

    # -- readiness ------------------------------------------------------------------

    def readiness_report(self) -> dict[str, Any]:
        """Run readiness once per data content; reuse the report while no file changed."""
        return cached_readiness(self.layout, self.work_dir / "readiness")

    def readiness(self) -> Readiness:
        report = self.readiness_report()
        return Readiness(
            self.name,
            report["level"],
            int(report["n_cases"]),
            int(report["n_usable"]),
            self.layout.has_train_labels,
            training_spacing(self.layout),
        )

    # -- data -----------------------------------------------------------------------

    def splits(self) -> tuple[list[dict], list[dict], list[dict]]:
        """(train, val, test) items of usable cases; train/val split seeded per site."""
        usable = usable_cases(self.readiness_report())
        unusable = {c.case_id for c in self.layout.cases} - usable
        labelled = site_items(self.layout, "train", labelled_only=True, exclude=unusable)
        train, val = split_train_val(labelled, self.seg.train.val_fraction, self.seed)
        test = site_items(self.layout, "test", labelled_only=True, exclude=unusable)
        return train, val, test

    def unlabelled_items(self) -> list[dict]:
        """Usable training images without labels (what a target site adapts on)."""
        usable = usable_cases(self.readiness_report())
        return [i for i in site_items(self.layout, "train") if i["case"] in usable]

    def intensity_map(self) -> IntensityMap | None:
        """The site's intensity map when alignment is on and a reference has arrived."""
        return self.shift.intensity_map() if self.align_intensity else None

    def cache(self) -> PreprocessCache:
        """The preprocessing every model input goes through (intensity-mapped when on)."""
        return PreprocessCache(self.cache_dir, self.seg.preprocess, self.intensity_map())

    def trainer(self, threshold: float | None = None, align: bool = True) -> SiteTrainer:
        """This site's trainer; ``threshold``: the federation's decision threshold, with
        which a site without labels reads lesion labels off the model (alignment only);
        ``align=False``: a plain trainer even when the strategy aligns (rounds before
        alignment has not started, see ``fed.align_min_val_dice``)."""
        train, val, _ = self.splits()
        if self.alignment is None or not align:
            return SiteTrainer(
                self.seg, train, val, cache_dir=self.cache_dir, intensity_map=self.intensity_map()
            )
        reference = self.shift.load_reference()
        if reference is None:
            raise RuntimeError(
                f"site {self.name}: {self.alignment} alignment needs the federation's "
                "reference, and none has arrived (run with fed.secure_stats=true)"
            )
        return AlignedTrainer(
            self.seg,
            train if self.layout.has_train_labels else self.unlabelled_items(),
            val,
            cache_dir=self.cache_dir,
            reference=reference,
            method=self.alignment,
            intensity_map=self.intensity_map(),
            threshold=0.5 if threshold is None else threshold,
        )

    # -- federated calls ------------------------------------------------------------

    def train(
        self,
        weights: list[np.ndarray],
        server_round: int,
        proximal_mu: float = 0.0,
        threshold: float | None = None,
        align: bool = True,
    ) -> TrainOutcome:
        """One round of local training from the global ``weights`` (``threshold``,
        ``align``: see :meth:`trainer`), at the learning rate of ``server_round`` of
        :attr:`rounds` (reported as the ``lr`` metric)."""
        try:
            trainer = self.trainer(threshold, align)
        except SiteError:
            raise
        except UsageError as err:  # e.g. no labelled training case (fedshift.model.data)
            raise self._cannot_train(str(err)) from err
        if trainer.num_train_cases == 0:
            raise self._cannot_train("no usable training case")
        result = trainer.train(
            global_weights=weights,
            proximal_mu=proximal_mu,
            round_index=server_round,
            total_rounds=self.rounds,
        )
        log.info(
            "site %s round %d: loss %.4f, %d steps at lr %.3g in %.1f s",
            self.name,
            server_round,
            result.loss,
            result.steps,
            result.lr,
            result.seconds,
        )
        metrics = {
            "loss": result.loss,
            "steps": float(result.steps),
            "train_seconds": result.seconds,
            "voxels_per_second": result.voxels_per_second,
            "lr": result.lr,
        }
        return TrainOutcome(trainer.get_weights(), result.num_examples, metrics)

    def evaluate(
        self,
        weights: list[np.ndarray],
        split: str,
        threshold: float | None = None,
        bures: bool = False,
    ) -> dict[str, float]:
        """Metrics of the global model on this site.

        ``split="val"``: tunes the decision threshold on the validation cases and reports
        their metrics (labelled sites). ``split="test"``: the held-out test split
        (labelsTs), with the threshold tuned on validation, or ``threshold`` when the site
        has no validation labels (a target site). ``bures``: the head sees the site's
        embeddings through the Bures-Wasserstein map of their Gaussian onto the reference's
        (:meth:`bures_map`), training-free alignment at inference. A test evaluation writes
        an overlay of the first case to ``work_dir/overlays``.
        """
        start = time.perf_counter()
        result, first = self.evaluate_cases(weights, split, threshold, bures)
        seconds = time.perf_counter() - start
        if first is None:
            return {"n_cases": 0.0, "threshold": result.threshold, "eval_seconds": seconds}
        if split == "test":
            item, prob = first
            pred = prob.numpy() >= result.threshold
            write_overlay(item, pred, self.work_dir / "overlays" / "test.png")
        return {
            **{k: float(v) for k, v in result.mean.items()},
            "threshold": float(result.threshold),
            "eval_seconds": seconds,
        }

    def evaluate_cases(
        self,
        weights: list[np.ndarray],
        split: str,
        threshold: float | None = None,
        bures: bool = False,
    ) -> tuple[ev.EvalResult, ev.Prediction | None]:
        """What :meth:`evaluate` measures, per case (these stay at the site), and the raw
        item and lesion probability of the first case (None when the split has no labelled
        case); writes nothing."""
        if split not in SPLITS:
            raise UsageError(f"site {self.name}: split must be one of {SPLITS}, got {split!r}")
        _, val, test = self.splits()
        device = choose_device(self.seg.train.device)
        model = build_network(self.seg.model, seed=self.seed).to(device)
        set_weights(model, weights)
        if bures:
            mapping = self.bures_map()
            fold_affine_into_head(model, mapping.A, mapping.b)
        cache = self.cache()
        # each volume is predicted once: validation for the threshold (and its metrics)
        val_pred = ev.predict_labelled(model, val, cache, self.seg, device)
        if val_pred:
            tuned, _ = ev.threshold_from(val_pred, self.seg)
        else:
            tuned = self.seg.eval.threshold if threshold is None else float(threshold)
        pred = (
            val_pred
            if split == "val"
            else ev.predict_labelled(model, test, cache, self.seg, device)
        )
        result = ev.results_from(pred, self.seg, tuned)
        if not pred:
            return result, None
        items = val if split == "val" else test
        first = next(i for i in items if "label" in i)  # the raw item of pred[0]
        return result, (first, pred[0][1])

    def statistics(
        self,
        weights: list[np.ndarray],
        server_round: int,
        samples_per_class: int = 256,
        round_id: str = "",
        threshold: float | None = None,
    ) -> LocalStatistics:
        """This site's statistics under the global ``weights`` (usable training cases),
        seeded by the site and ``server_round``, kept in ``work_dir/shift`` for
        :meth:`receive_reference`; ``threshold``: the federation's decision threshold, where
        the model's predictions are read. Stays at the site: only its secure sum over >= 3
        sites and the diagnosis scalars leave (see
        :func:`fedshift.site.stats.site_statistics`)."""
        device = choose_device(self.seg.train.device)
        model = build_network(self.seg.model, seed=self.seed).to(device)
        set_weights(model, weights)
        local = site_statistics(
            model,
            self.unlabelled_items(),
            self.cache(),
            self.seg,
            device,
            samples_per_class=samples_per_class,
            seed=derive_seed(self.seed, server_round),
            threshold=threshold,
        )
        self.shift.save_local(local, round_id)
        return local

    def bures_map(self) -> AffineMap:
        """The Bures-Wasserstein map of this site's embedding Gaussian (background, or all
        voxels without labels; from its latest statistics) onto the reference's background
        Gaussian."""
        reference = self.shift.load_reference()
        if reference is None:
            raise SiteError(
                f"site {self.name}: a Bures map needs the federation's reference, and none has "
                "arrived; run with fed.secure_stats=true so that statistics rounds send one"
            )
        target = reference.gaussians.get("background", reference.gaussians.get("all"))
        local = self._local_statistics()
        own = local.stats.embeddings["background"]
        if own.n < 2:
            own = local.stats.embeddings["all"]
        if target is None or own.n < 2:
            raise SiteError(
                f"site {self.name}: too few embeddings for a Bures map ({int(own.n)} of its own, "
                f"{'a' if target else 'no'} reference Gaussian); check its usable training cases"
            )
        mean, cov = gaussian_from(own)
        return bures_map(mean, cov, target.mean, target.cov)

    def receive_reference(self, reference: Reference, round_id: str = "") -> SiteIndicators:
        """The federation's reference in; this site's shift indicators (scalars) out.

        Measures against the statistics of the same round (:meth:`statistics`), keeps the
        reference and the indicators in ``work_dir/shift`` for the site's report and, with
        ``align_intensity``, fits and keeps its intensity map (its own histogram onto the
        reference's; the map never leaves the site).
        """
        local = self._local_statistics(round_id)
        indicators = measure(
            self.name,
            local.stats,
            reference,
            dice=local.dice,
            volume_bias=local.volume_bias,
            calibration=self.calibration(),
        )
        self.shift.save_reference(reference, indicators)
        own, federation = local.stats.intensity, reference.intensity_pmf
        if self.align_intensity and own.sum() > 0 and federation.sum() > 0:
            mapping = quantile_map(own, federation, reference.intensity_edges)
            self.shift.save_intensity_map(mapping)
            log.info("site %s: intensity map fitted to the federation's histogram", self.name)
        return indicators

    def _cannot_train(self, why: str) -> SiteError:
        return SiteError(
            f"site {self.name} cannot train: {why}. Run `fedshift readiness` on the site folder "
            "and fix its findings, or leave the site out of training"
        )

    def _local_statistics(self, round_id: str | None = None) -> LocalStatistics:
        """The statistics :meth:`statistics` kept (of round ``round_id`` when given)."""
        if not self.shift.local_path.is_file():
            raise SiteError(
                f"site {self.name} has no statistics yet: a statistics round must run before "
                "the reference arrives or a Bures map is asked for (fed.secure_stats=true)"
            )
        return self.shift.load_local(round_id)

    def calibration(self) -> Calibration | None:
        """This site's raters against the reference standard on the shared calibration
        cases (``SITE/calibration``), or ``None`` without them. A malformed calibration
        folder is logged and left out: it must not stop the site's statistics round."""
        try:
            return measure_calibration(self.layout.root)
        except DataError as err:
            log.warning("site %s: calibration cases not used: %s (%s)", self.name, err, err.file)
            return None


def site_worker(
    cfg: RunConfig, data_dir: str | Path, work_dir: str | Path | None = None
) -> SiteWorker:
    """The worker of one site of a run. Without an explicit ``work_dir`` (simulation, local
    baselines) the site works in ``<out>/sites/<site>`` and caches preprocessing in
    ``data.cache_dir/<site>``, shared across runs; with one (a hospital's SuperNode) both
    live in ``work_dir``."""
    name = Path(data_dir).resolve().name
    options = {
        "seed": cfg.seed,
        "align_intensity": cfg.fed.align_intensity,
        "alignment": None if cfg.seg.align.method == "none" else cfg.seg.align.method,
        "rounds": cfg.fed.rounds,
    }
    if work_dir is not None:
        return SiteWorker(data_dir, work_dir, cfg.seg, **options)
    cache = Path(cfg.data.cache_dir) / name if cfg.data.cache_dir else None
    work = site_work_dir(cfg, data_dir)
    return SiteWorker(data_dir, work, cfg.seg, cache_dir=cache, **options)
