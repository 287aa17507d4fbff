"""diagnosis.html: which kind of shift each site has, and what its data looks like next to
the federation's.

The federation part comes from the coordinator's run folder (``diagnosis.json``: the
scalars each site reported, and the verdicts). The per-site panels need a site's private
shift folder (:class:`~fedshift.site.files.ShiftFolder`): in a simulation every
site's work folder is under the run folder, so all panels are drawn; in a deployment a
hospital runs ``fedshift diagnose`` with its own work folder and sees its own panel only.

The page leads with each site's verdict in words and its evidence
(:mod:`fedshift.report.verdicts`); the table of every indicator is folded behind it. Per
site: its brain-intensity histogram next to the federation's (and after its own 1-D OT
map), a 2-D projection of its sampled embeddings on the reference's two main axes, before
and after the Bures-Wasserstein map of its embedding Gaussian onto the reference Gaussian,
and (folded) its descriptor means next to the rest of the federation's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedshift.render import plots
from fedshift.render.pages import num, render
from fedshift.report.verdicts import indicator_table, verdict, verdict_cards
from fedshift.shift.descriptors import FAMILIES
from fedshift.shift.distances import apply_affine_map, bures_map
from fedshift.shift.embeddings import Gaussian, gaussian_from
from fedshift.shift.intensity import apply as apply_map
from fedshift.shift.intensity import quantile_map
from fedshift.shift.reference import Reference
from fedshift.site.files import ShiftFolder
from fedshift.site.stats import LocalStatistics

TEMPLATES = Path(__file__).resolve().parent / "templates"
_GROUPS = (("background", 0, "#1f77b4"), ("lesion", 1, "#ff7f0e"), ("unlabelled", -1, "#7f7f7f"))


def _descriptor_rows(local: LocalStatistics, reference: Reference) -> list[dict[str, str]]:
    rows = []
    for family, names in FAMILIES.items():
        own = local.stats.descriptors.get(family)
        fed = reference.descriptors.get(family)
        if own is None or fed is None or own.n < 1:
            continue
        mine, rest = own.moments(), (fed - own).moments()
        own_median, fed_median = own.medians(), fed.medians()
        for name, _ in names:
            rows.append(
                {
                    "family": family,
                    "name": name,
                    "mine": f"{num(mine[name][0])} ± {num(mine[name][1])}",
                    "rest": f"{num(rest[name][0])} ± {num(rest[name][1])}",
                    "own_median": num(own_median[name]),
                    "fed_median": num(fed_median[name]),
                }
            )
    return rows


def _intensity_chart(local: LocalStatistics, reference: Reference) -> str | None:
    edges = reference.intensity_edges
    own = local.stats.intensity
    if own.sum() <= 0 or reference.intensity_pmf.sum() <= 0:
        return None
    mapping = quantile_map(own, reference.intensity_pmf, edges)
    centres = 0.5 * (edges[:-1] + edges[1:])
    mapped = np.histogram(apply_map(mapping, centres), bins=edges, weights=own)[0]
    return plots.histograms(
        edges,
        [
            ("this site", own),
            ("federation", reference.intensity_pmf),
            ("this site, mapped", mapped),
        ],
        "brain intensities (standard preprocessing)",
        "z-scored intensity",
        width_in=4.6,
    )


def _gaussian(local: LocalStatistics, name: str) -> Gaussian | None:
    st = local.stats.embeddings.get(name)
    return gaussian_from(st) if st is not None and st.n >= 2 else None


def _embedding_charts(local: LocalStatistics, reference: Reference) -> list[str]:
    """The site's embeddings on the reference's two main axes, before and after its
    Bures map; empty when there is nothing to project."""
    ref = reference.gaussians.get("background", reference.gaussians.get("all"))
    own = _gaussian(local, "background") or _gaussian(local, "all")
    if ref is None or own is None or len(local.samples) == 0:
        return []
    _, vecs = np.linalg.eigh(ref.cov)
    axes = vecs[:, ::-1][:, :2]  # the reference's two main axes

    def project(x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) - ref.mean) @ axes

    bw = bures_map(own.mean, own.cov, ref.mean, ref.cov)
    mapped = apply_affine_map(local.samples, bw.A, bw.b)
    ellipses = [("reference background", np.zeros(2), axes.T @ ref.cov @ axes, "#2ca02c")]
    lesion = reference.gaussians.get("lesion")
    if lesion is not None:
        ellipses.append(
            ("reference lesion", project(lesion.mean), axes.T @ lesion.cov @ axes, "#d62728")
        )
    labels = local.sample_labels

    def groups(points: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
        return [
            (name, project(points[labels == code]), color)
            for name, code, color in _GROUPS
            if np.any(labels == code)
        ]

    both = np.concatenate([project(local.samples), project(mapped)])
    lo, hi = np.percentile(both, 1, axis=0), np.percentile(both, 99, axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    limits = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    return [
        plots.scatter(groups(points), ellipses, title, "axis 1", "axis 2", limits, width_in=3.4)
        for points, title in (
            (local.samples, "embeddings, as they are"),
            (mapped, "after the Bures map"),
        )
    ]


def site_panel(
    name: str, folder: ShiftFolder | None, fallback: Reference | None, entry: dict | None = None
) -> dict[str, Any]:
    """What one site's section shows: its verdict (``entry`` of ``diagnosis.json``) and,
    when its private files are here, its charts and descriptor table."""
    panel: dict[str, Any] = {
        "name": name,
        "verdict": verdict(entry) if entry else None,
        "stale": None,
    }
    reference = (folder.load_reference() if folder else None) or fallback
    if folder is None or reference is None or not folder.local_path.is_file():
        return {**panel, "private": False}
    try:
        local = folder.load_local()
    except (KeyError, ValueError) as err:  # written by a FedShift with other descriptors
        return {**panel, "private": False, "stale": str(err)}
    intensity = _intensity_chart(local, reference)
    embeddings = _embedding_charts(local, reference)
    notes = [] if intensity else ["No intensity histogram: no brain voxel was counted."]
    notes += [] if embeddings else ["No embeddings to project."]
    return {
        **panel,
        "private": True,
        "charts": ([intensity] if intensity else []) + embeddings,
        "chart_notes": notes,
        "descriptors": _descriptor_rows(local, reference),
    }


def _site_folders(run: Path, extra: Sequence[Path]) -> dict[str, ShiftFolder]:
    found = {}
    for work in sorted((run / "sites").glob("*")) if (run / "sites").is_dir() else []:
        if (work / "shift").is_dir():
            found[work.name] = ShiftFolder(work)
    for work in extra:
        indicators = ShiftFolder(work).indicators()
        name = str(indicators["site"]) if indicators else Path(work).resolve().name
        found[name] = ShiftFolder(work)
    return found


def render_diagnosis(
    diagnosis: dict[str, Any],
    run_name: str,
    folders: dict[str, ShiftFolder] | None = None,
    fallback: Reference | None = None,
) -> str:
    """The page for a ``diagnosis.json`` body; ``folders`` are the sites' private shift
    folders that are here (name -> folder), ``fallback`` the reference to use for a
    folder without its own copy."""
    folders = folders or {}
    entries = diagnosis.get("sites", {})
    names = sorted(set(entries) | set(folders))
    return render(
        TEMPLATES,
        "diagnosis.html.j2",
        run=run_name,
        after_round=diagnosis.get("after_round", "?"),
        verdicts=verdict_cards(diagnosis),
        indicators=indicator_table(diagnosis),
        sites=[site_panel(n, folders.get(n), fallback, entries.get(n)) for n in names],
    )


def write_diagnosis_report(
    run: str | Path, site_work: Sequence[str | Path] = (), out: str | Path | None = None
) -> Path:
    """Write ``diagnosis.html`` for a run folder; returns its path.

    Parameters
    ----------
    run : the coordinator's run folder (holds ``diagnosis.json``)
    site_work : extra site work folders (a hospital's own), beyond ``<run>/sites/*``
    out : output file (default ``<run>/diagnosis.html``)

    Raises
    ------
    FileNotFoundError
        The run has no ``diagnosis.json`` (it ran without ``fed.secure_stats=true``).
    """
    run = Path(run)
    path = run / "diagnosis.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run the federation with fed.secure_stats=true"
        )
    diagnosis = json.loads(path.read_text())
    fallback = None
    if (run / "reference.npz").is_file():
        with np.load(run / "reference.npz") as data:
            fallback = Reference.from_arrays({k: data[k] for k in data.files})
    folders = _site_folders(run, [Path(p) for p in site_work])
    target = Path(out) if out else run / "diagnosis.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_diagnosis(diagnosis, run.resolve().name, folders, fallback))
    return target
