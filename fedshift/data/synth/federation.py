"""Write a synthetic federation: one nnU-Net v2 site folder per site, plus truth.json.

Each labelled site also gets the federation's calibration cases
(:mod:`fedshift.shift.calibration`): the same images and reference standard (the true
lesion masks, on the unshifted scanner) everywhere, and the site's raters' annotation of
them (its annotation protocol applied to the truth, as for its own cases).

Deterministic: every case draws from ``numpy.random.default_rng([seed, crc32(site),
split, index])``, so a case does not change when other sites are added, and the same seed
gives the same bytes (nibabel writes gzip with a zero timestamp).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from fedshift.config import to_yaml
from fedshift.data.layout import CALIBRATION_DIR
from fedshift.data.synth.acquisition import acquire, flair_contrast
from fedshift.data.synth.anatomy import (
    Subject,
    Template,
    load_template,
    output_grid,
    sample_subject,
)
from fedshift.data.synth.annotation import extra_rater, rater_style
from fedshift.data.synth.config import SiteSpec, SynthConfig
from fedshift.data.synth.lesions import draw_lesions, sample_lesions
from fedshift.data.synth.physics import flair_means, inflow_spots, ventricle_fraction
from fedshift.errors import UsageError

log = logging.getLogger(__name__)

DESCRIP = b"FedShift synthetic FLAIR phantom"
_SPLIT_CODE = {"train": 0, "test": 1}
#: the random stream of the calibration cases (not a valid site name, so no site shares it)
_CALIBRATION_STREAM = "#calibration"


def case_rng(seed: int, site: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(site.encode()), _SPLIT_CODE[split], index])


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(data, affine)
    img.header["descrip"] = DESCRIP
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


def _artifacts(spec: SiteSpec, n_train: int, rng: np.random.Generator) -> dict[int, str]:
    """Which training cases get a quality problem (fixed counts, random cases)."""
    order = rng.permutation(n_train)
    n_ghost = int(round(spec.ghosting_fraction * n_train))
    n_spike = int(round(spec.spike_fraction * n_train))
    chosen = {int(i): "ghosting" for i in order[:n_ghost]}
    chosen.update({int(i): "spike" for i in order[n_ghost : n_ghost + n_spike]})
    return chosen


def _contrast(
    spec: SiteSpec,
    template: Template,
    subject: Subject,
    lesion: np.ndarray,
    voxel_mm: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The anatomical FLAIR image: the legacy table, or the site's protocol (then with its
    parameters for truth.json). The physics path makes the legacy path's draws from ``rng``
    in the same order and draws its own (inflow spots) from a spawned child generator, so
    the rest of the case (bias field, artefacts, noise) matches the legacy case's."""
    protocol = spec.protocol()
    if protocol is None:
        return flair_contrast(subject.maps, lesion, rng), {}
    own = rng.spawn(1)[0]  # does not advance rng
    contrast = flair_means(protocol)
    image = flair_contrast(subject.maps, lesion, rng, contrast.tissues, contrast.lesion)
    means = {**contrast.tissues, "lesion": contrast.lesion}
    params: dict[str, Any] = {"contrast": {k: round(v, 4) for k, v in means.items()}}
    if spec.csf_inflow > 0:
        inside = np.minimum(ventricle_fraction(template, subject.points_mm), subject.maps[2])
        spots, count = inflow_spots(inside, spec.csf_inflow, contrast, voxel_mm, own)
        image = image + spots * (1.0 - lesion)
        params["inflow_spots"] = count
    return image, params


def synth_case(
    cfg: SynthConfig,
    site: str,
    split: str,
    index: int,
    artifact: str | None,
    spec: SiteSpec | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """One case: (int16 image, true lesion mask uint8, affine, planted parameters).
    ``spec`` defaults to ``cfg.sites[site]``."""
    spec = cfg.sites[site] if spec is None else spec
    template = load_template()
    shape, affine = output_grid(template, cfg.voxel_mm)
    rng = case_rng(cfg.seed, site, split, index)
    subject = sample_subject(
        template,
        shape,
        affine,
        rng,
        deformation_mm=cfg.deformation_mm,
        scale_sd=cfg.scale_sd,
        ventricle_sd=cfg.ventricle_sd,
    )
    lesions = sample_lesions(
        template,
        rng,
        mean_count=cfg.lesion_count * spec.lesion_load,
        median_radius_mm=cfg.lesion_radius_mm * spec.lesion_size,
        periventricular_fraction=cfg.periventricular_fraction,
    )
    lesion = draw_lesions(subject.points_mm, lesions, cfg.voxel_mm)
    lesion = np.minimum(lesion, subject.maps[0] + subject.maps[1])  # only in parenchyma
    anatomical, contrast = _contrast(spec, template, subject, lesion, cfg.voxel_mm, rng)
    image, planted = acquire(
        anatomical,
        spec,
        voxel_mm=cfg.voxel_mm,
        base_noise=cfg.base_noise,
        artifact=artifact,
        ghosting_strength=cfg.ghosting_strength,
        spike_strength=cfg.spike_strength,
        rng=rng,
    )
    truth = (lesion > 0.5).astype(np.uint8)
    params = {
        **subject.params,
        **planted,
        **contrast,
        "n_lesions": len(lesions),
        "lesion_volume_mm3": float(truth.sum() * cfg.voxel_mm**3),
        "lesions": [les.to_dict() for les in lesions],
    }
    return image, truth, affine, params


def _write_case(
    cfg: SynthConfig, site: str, root: Path, split: str, index: int, artifact: str | None
) -> dict[str, Any]:
    spec = cfg.sites[site]
    case_id = f"{site}_{split}{index:03d}"
    image, truth, affine, params = synth_case(cfg, site, split, index, artifact)
    images_dir, labels_dir = (
        ("imagesTr", "labelsTr") if split == "train" else ("imagesTs", "labelsTs")
    )
    _save(image, affine, root / images_dir / f"{case_id}_0000.nii.gz")
    label = rater_style(truth, spec, cfg.voxel_mm**3)
    params["label_volume_mm3"] = float(label.sum() * cfg.voxel_mm**3)
    if split == "test" or spec.labelled:
        _save(label, affine, root / labels_dir / f"{case_id}.nii.gz")
    if split == "train" and spec.labelled and spec.n_raters > 1:
        rng = case_rng(cfg.seed + 1, site, split, index)
        for r in range(1, spec.n_raters):
            _save(
                extra_rater(label, rng),
                affine,
                root / "labelsTr_raters" / f"rater{r}" / f"{case_id}.nii.gz",
            )
    return {"case": case_id, "split": split, **params}


def write_calibration(
    cfg: SynthConfig, out: Path, progress: Callable[[str], None] | None = None
) -> int:
    """Write ``SITE/calibration/{images,reference,labels}`` for every labelled site of
    ``cfg`` under ``out`` (site folders that exist or not); returns the number of cases.
    Deterministic, and independent of the sites: one more call rewrites the same bytes."""
    common = SiteSpec()
    cases = []
    for i in range(cfg.calibration_cases):
        image, truth, affine, _ = synth_case(cfg, _CALIBRATION_STREAM, "test", i, None, common)
        cases.append((f"calibration{i:03d}", image, truth, affine))
        if progress:
            progress(f"calibration case {i + 1}/{cfg.calibration_cases}")
    for site, spec in cfg.sites.items():
        if not spec.labelled:
            continue
        root = out / site / CALIBRATION_DIR
        for case_id, image, truth, affine in cases:
            _save(image, affine, root / "images" / f"{case_id}_0000.nii.gz")
            _save(truth, affine, root / "reference" / f"{case_id}.nii.gz")
            label = rater_style(truth, spec, cfg.voxel_mm**3)
            _save(label, affine, root / "labels" / f"{case_id}.nii.gz")
    return len(cases)


def _dataset_json(site: str, spec: SiteSpec, n_train: int) -> dict[str, Any]:
    return {
        "name": site,
        "description": "FedShift synthetic site built from the MNI152 template (nilearn)",
        "channel_names": {"0": "FLAIR"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_train if spec.labelled else 0,
        "file_ending": ".nii.gz",
    }


def write_federation(
    cfg: SynthConfig,
    out: Path,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate every site of ``cfg`` under ``out``; returns the truth.json content."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(
            f"output folder {str(out)!r} is not empty (pass --overwrite to replace it)"
        )
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {
        "scenario": cfg.name,
        "seed": cfg.seed,
        "voxel_mm": cfg.voxel_mm,
        "sites": {},
    }
    for site, spec in cfg.sites.items():
        n_train, n_test = cfg.site_cases(site)
        root = out / site
        artifacts = _artifacts(spec, n_train, case_rng(cfg.seed, site, "test", 10_000))
        cases = []
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                cases.append(
                    _write_case(
                        cfg, site, root, split, i, artifacts.get(i) if split == "train" else None
                    )
                )
                if progress:
                    progress(f"{site}: {split} case {i + 1}/{n}")
        (root / "dataset.json").write_text(json.dumps(_dataset_json(site, spec, n_train), indent=2))
        truth["sites"][site] = {"spec": _spec_dict(spec), "cases": cases}
    truth["calibration_cases"] = write_calibration(cfg, out, progress)
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    (out / "scenario.yaml").write_text(to_yaml(cfg))
    return truth


def _spec_dict(spec: SiteSpec) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(spec)
