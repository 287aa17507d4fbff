"""From per-case results to the site's report: layout findings, duplicates, IQM outliers,
the level, and the ``readiness.json`` document.

Everything here is a pure function of the results; nothing reads images except
:func:`loose_images`, which looks at files of a folder that has no nnU-Net cases.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from fedshift import __version__
from fedshift.data.layout import SiteLayout
from fedshift.data.nifti import is_nifti, read_volume
from fedshift.errors import DataError
from fedshift.findings import Finding, finding
from fedshift.readiness.case_check import CaseResult
from fedshift.readiness.identifiers import header_findings
from fedshift.readiness.levels import LEVEL_MEANING, LevelEvidence, assign_level
from fedshift.readiness.outliers import ADVISORY, find_outliers
from fedshift.readiness.site_config import ReadinessConfig, attestation_findings

#: in a folder without cases, at most this many loose NIfTI files are tried
MAX_LOOSE_FILES = 20


def case_keys(results: Sequence[CaseResult]) -> list[str]:
    """Report keys of the cases: the case id, or ``"<split>:<id>"`` when a test case
    reuses a training case's id."""
    keys: list[str] = []
    for r in results:
        keys.append(r.case_id if r.case_id not in keys else f"{r.split}:{r.case_id}")
    return keys


def split_layout_problems(
    layout: SiteLayout, keys: Sequence[str]
) -> tuple[list[Finding], dict[str, list[Finding]]]:
    """Layout findings about a case's files go to that case; the others to the site."""
    owner: dict[str, str] = {}
    for key, case in zip(keys, layout.cases, strict=True):
        for path in (*case.images, case.label):
            if path is not None:
                owner[str(layout.rel(path))] = key
    site: list[Finding] = []
    per_case: dict[str, list[Finding]] = {k: [] for k in keys}
    for problem in layout.problems:
        key = owner.get(problem.file or "")
        (per_case[key] if key else site).append(problem)
    return site, per_case


def duplicate_findings(
    results: Sequence[CaseResult], keys: Sequence[str], image_files: Sequence[str]
) -> dict[str, list[Finding]]:
    """``duplicate`` on every case whose image data equals an earlier case's."""
    first: dict[str, int] = {}
    found: dict[str, list[Finding]] = {}
    for i, result in enumerate(results):
        if result.digest is None:
            continue
        if result.digest in first:
            j = first[result.digest]
            found.setdefault(keys[i], []).append(
                finding(
                    "duplicate",
                    f"voxel data identical to case {keys[j]} ({image_files[j]})",
                    image_files[i],
                )
            )
        else:
            first[result.digest] = i
    return found


def outlier_findings(
    results: Sequence[CaseResult],
    keys: Sequence[str],
    image_files: Sequence[str],
    config: ReadinessConfig,
) -> tuple[dict[str, list[Finding]], list[dict[str, Any]]]:
    """``iqm_outlier`` findings against the site's own distribution, and their list.

    An outlier on the side of worse quality is an error (the case is excluded); one on
    the side of better quality (e.g. a much higher SNR) is a warning: it hints at another
    protocol, not at an unusable image.
    """
    iqms = {k: r.iqms for k, r in zip(keys, results, strict=True) if r.iqms is not None}
    settings = config.readiness
    outliers = find_outliers(
        iqms, threshold=settings.outlier_z, min_reference=settings.min_outlier_cases
    )
    files = dict(zip(keys, image_files, strict=True))
    found: dict[str, list[Finding]] = {}
    for o in outliers:
        side = "far from" if o.worse or o.metric in ADVISORY else "unusually good against"
        found.setdefault(o.case, []).append(
            finding(
                "iqm_outlier",
                f"{o.metric} = {o.value:.4g} is {side} the site's cases "
                f"(robust z = {o.z:+.1f}, limit {settings.outlier_z:g})"
                + ("" if o.worse else "; check the protocol, the case is kept"),
                files[o.case],
                severity=None if o.worse else "warning",
            )
        )
    return found, [asdict(o) for o in outliers]


def loose_images(layout: SiteLayout) -> tuple[int, list[Finding]]:
    """For a folder without nnU-Net cases: (readable NIfTI files found, header findings).

    Decides between level C (readable but unstructured) and D (nothing readable). Tries
    at most :data:`MAX_LOOSE_FILES` files and stops at the first readable one.
    """
    if layout.cases:
        return 0, []
    files = sorted(p for p in layout.root.rglob("*") if p.is_file() and is_nifti(p))
    found: list[Finding] = []
    for path in files[:MAX_LOOSE_FILES]:
        try:
            vol = read_volume(path)
        except DataError as exc:
            found.append(finding(exc.code, str(exc), layout.rel(path)))
            continue
        found.extend(header_findings(vol.header, layout.rel(path)))
        return 1, found
    return 0, found


def jsonable(value: Any) -> Any:
    """NaN and inf become ``None`` (JSON has no NaN); containers are converted deeply."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _reasons(evidence: LevelEvidence, n_unstructured: int) -> list[str]:
    reasons = []
    if evidence.n_readable_images == 0:
        reasons.append("no readable image")
    if evidence.identifiable:
        reasons.append("header text looks identifying (see identifying_text findings)")
    if not evidence.structured:
        reasons.append(f"not in nnU-Net v2 raw layout ({n_unstructured} unstructured findings)")
    if evidence.n_readable_images and evidence.n_usable == 0:
        reasons.append("no case passed every check")
    if not evidence.has_train_labels:
        reasons.append("no labelsTr/ folder: an unlabelled (target) site, at most level B")
    elif evidence.n_usable_labelled_train == 0:
        reasons.append("no usable labelled training case")
    if not reasons:
        reasons.append(f"{evidence.n_usable_labelled_train} usable labelled training cases")
    return reasons


def _severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings)
    return {s: counts.get(s, 0) for s in ("error", "warning", "info")}


def _site_findings(layout: SiteLayout, config: ReadinessConfig, site: list[Finding]) -> int:
    """Add loose-file, unlabelled-site and attestation findings; returns readable loose files."""
    n_loose, loose_found = loose_images(layout)
    site += loose_found
    if not layout.has_train_labels:
        site.append(finding("unlabelled_site", "no labelsTr/ folder: an unlabelled (target) site"))
    site += attestation_findings(config.attestations)
    return n_loose


def _case_entries(
    layout: SiteLayout,
    config: ReadinessConfig,
    results: Sequence[CaseResult],
    keys: Sequence[str],
    per_case: dict[str, list[Finding]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each case's findings (layout, own checks, duplicate, outliers) and usability."""
    image_files = [str(layout.rel(c.image)) for c in layout.cases]
    duplicates = duplicate_findings(results, keys, image_files)
    outliers, outlier_list = outlier_findings(results, keys, image_files, config)
    cases = []
    for key, result in zip(keys, results, strict=True):
        found = per_case[key] + result.findings + duplicates.get(key, []) + outliers.get(key, [])
        cases.append(
            {
                "case": key,
                "split": result.split,
                "usable": not any(f.severity == "error" for f in found),
                "has_label": result.has_label,
                "findings": [f.to_dict() for f in found],
            }
        )
    return cases, outlier_list


def _evidence(
    layout: SiteLayout,
    results: Sequence[CaseResult],
    cases: list[dict[str, Any]],
    all_findings: list[Finding],
    n_loose: int,
) -> LevelEvidence:
    return LevelEvidence(
        n_readable_images=sum(r.image_readable for r in results) + n_loose,
        identifiable=any(f.code == "identifying_text" for f in all_findings),
        structured=layout.structured,
        n_usable=sum(c["usable"] for c in cases),
        has_train_labels=layout.has_train_labels,
        n_usable_labelled_train=sum(
            c["usable"] and c["split"] == "train" and c["has_label"] for c in cases
        ),
    )


def build_report(
    layout: SiteLayout, config: ReadinessConfig, results: Sequence[CaseResult]
) -> dict[str, Any]:
    """The ``readiness.json`` document (see :func:`fedshift.readiness.runner.run_readiness`)."""
    keys = case_keys(results)
    site_findings, per_case = split_layout_problems(layout, keys)
    n_loose = _site_findings(layout, config, site_findings)
    cases, outlier_list = _case_entries(layout, config, results, keys, per_case)
    all_findings = [Finding(**f) for c in cases for f in c["findings"]] + site_findings
    evidence = _evidence(layout, results, cases, all_findings, n_loose)
    level = assign_level(evidence)
    n_unstructured = sum(f.code == "unstructured" for f in site_findings)
    by_key = dict(zip(keys, results, strict=True))
    report = {
        "fedshift_version": __version__,
        "site": layout.name,
        "level": level,
        "level_meaning": LEVEL_MEANING[level],
        "level_reasons": _reasons(evidence, n_unstructured),
        "n_cases": len(cases),
        "n_usable": evidence.n_usable,
        "shareable": {"level": level, "n_cases": len(cases), "n_usable": evidence.n_usable},
        "counts": {
            "train": sum(c["split"] == "train" for c in cases),
            "test": sum(c["split"] == "test" for c in cases),
            "usable_labelled_train": evidence.n_usable_labelled_train,
            "findings": _severity_counts(all_findings),
        },
        "modality": layout.modality,
        "findings": [f.to_dict() for f in site_findings],
        "cases": cases,
        "iqm": {k: r.iqms for k, r in by_key.items() if r.iqms is not None},
        "iqm_outliers": outlier_list,
        "label_stats": {k: r.label_stats for k, r in by_key.items() if r.label_stats},
        "raters": {k: r.raters for k, r in by_key.items() if r.raters},
        "attestations": asdict(config.attestations),
        "settings": asdict(config.readiness),
    }
    return jsonable(report)
