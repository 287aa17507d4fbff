"""diagnosis.html: which kind of shift each site has, and what its data looks like next to
the federation's.

The federation part comes from the coordinator's run folder (``diagnosis.json``: the
scalars each site reported, and the verdicts). The per-site panels need a site's private
shift folder (:class:`~fedshift.site.files.ShiftFolder`): in a simulation every
site's work folder is under the run folder, so all panels are drawn; in a deployment a
hospital runs ``fedshift diagnose`` with its own work folder and sees its own panel only.

Per site: its descriptor means next to the rest of the federation's, its brain-intensity
histogram next to the federation's (and after its own 1-D OT map), and a 2-D projection of
its sampled embeddings on the reference's two main axes, before and after the
Bures-Wasserstein map of its embedding Gaussian onto the reference Gaussian.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedshift.report import svg
from fedshift.shift.descriptors import FAMILIES
from fedshift.shift.distances import apply_affine_map, bures_map
from fedshift.shift.intensity import apply as apply_map
from fedshift.shift.intensity import quantile_map
from fedshift.shift.reference import Reference
from fedshift.shift.stats import Gaussian, gaussian_from
from fedshift.site.files import ShiftFolder
from fedshift.site.stats import LocalStatistics

_INDICATORS = (
    ("acquisition_similarity", "acq. sim."),
    ("noise_offset", "noise offset"),
    ("contrast_offset", "contrast offset"),
    ("nonuniformity_offset", "non-uniformity offset"),
    ("sharpness_offset", "sharpness offset"),
    ("population_similarity", "pop. sim."),
    ("population_effect", "lesion load (sd)"),
    ("annotation_similarity", "ann. sim."),
    ("calibration_volume", "calib. log vol."),
    ("calibration_count", "calib. log count"),
    ("calibration_dice", "calib. Dice"),
    ("intensity_w1", "intensity W1"),
    ("embedding_bw", "embedding BW"),
    ("lesion_volume", "lesion vol. dist."),
    ("lesion_count", "lesion count dist."),
    ("dice", "Dice"),
    ("volume_bias", "volume bias"),
)
_STYLE = (
    "body{font-family:sans-serif;max-width:1150px;margin:2em auto}"
    "table{border-collapse:collapse;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
    "td.l{text-align:left}.shift{color:#b00;font-weight:bold}"
    "section{border-top:1px solid #ddd;margin-top:1.5em}"
)


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def verdict_table(diagnosis: dict[str, Any]) -> str:
    """One row per site: verdict, the indicators it reported, the evidence."""
    head = "".join(f"<th>{label}</th>" for _, label in _INDICATORS)
    rows = [f"<tr><th>site</th><th>shift</th>{head}<th>evidence</th></tr>"]
    for site, entry in sorted(diagnosis.get("sites", {}).items()):
        shift = ", ".join(entry.get("shift", [])) or "none"
        cls = "shift" if entry.get("shift") else ""
        ind = entry.get("indicators", {})
        cells = "".join(f"<td>{_num(ind.get(k))}</td>" for k, _ in _INDICATORS)
        rows.append(
            f"<tr><td class=l>{html.escape(site)}</td><td class='l {cls}'>{html.escape(shift)}"
            f"</td>{cells}<td class=l>{html.escape(str(entry.get('evidence', '')))}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _descriptor_table(local: LocalStatistics, reference: Reference) -> str:
    rows = [
        "<tr><th>family</th><th>descriptor</th><th>this site</th><th>rest of federation</th>"
        "<th>median: this site</th><th>median: federation</th></tr>"
    ]
    for family, names in FAMILIES.items():
        own = local.stats.descriptors.get(family)
        fed = reference.descriptors.get(family)
        if own is None or fed is None or own.n < 1:
            continue
        mine, rest = own.moments(), (fed - own).moments()
        own_median, fed_median = own.medians(), fed.medians()
        for name, _ in names:
            m, s = mine[name]
            rm, rs = rest[name]
            rows.append(
                f"<tr><td class=l>{family}</td><td class=l>{name}</td>"
                f"<td>{_num(m)} ± {_num(s)}</td><td>{_num(rm)} ± {_num(rs)}</td>"
                f"<td>{_num(own_median[name])}</td><td>{_num(fed_median[name])}</td></tr>"
            )
    return "<table>" + "".join(rows) + "</table>"


def _intensity_chart(local: LocalStatistics, reference: Reference) -> str:
    edges = reference.intensity_edges
    own = local.stats.intensity
    if own.sum() <= 0 or reference.intensity_pmf.sum() <= 0:
        return "<p>(no intensity histogram)</p>"
    mapping = quantile_map(own, reference.intensity_pmf, edges)
    centres = 0.5 * (edges[:-1] + edges[1:])
    mapped = np.histogram(apply_map(mapping, centres), bins=edges, weights=own)[0]
    return svg.histograms(
        edges,
        [
            ("this site", own),
            ("federation", reference.intensity_pmf),
            ("this site, mapped", mapped),
        ],
        "brain intensities (standard preprocessing)",
        "z-scored intensity",
    )


def _gaussian(local: LocalStatistics, name: str) -> Gaussian | None:
    st = local.stats.embeddings.get(name)
    return gaussian_from(st) if st is not None and st.n >= 2 else None


def _embedding_charts(local: LocalStatistics, reference: Reference) -> str:
    ref = reference.gaussians.get("background", reference.gaussians.get("all"))
    own = _gaussian(local, "background") or _gaussian(local, "all")
    if ref is None or own is None or len(local.samples) == 0:
        return "<p>(no embeddings to project)</p>"
    _, vecs = np.linalg.eigh(ref.cov)
    axes = vecs[:, ::-1][:, :2]  # the reference's two main axes
    project = lambda x: (np.asarray(x) - ref.mean) @ axes  # noqa: E731
    bw = bures_map(own.mean, own.cov, ref.mean, ref.cov)
    mapped = apply_affine_map(local.samples, bw.A, bw.b)
    ellipses = [("reference bg", np.zeros(2), axes.T @ ref.cov @ axes, "#2ca02c")]
    lesion = reference.gaussians.get("lesion")
    if lesion is not None:
        ellipses.append(
            ("reference lesion", project(lesion.mean), axes.T @ lesion.cov @ axes, "#d62728")
        )

    def groups(points: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
        labels = local.sample_labels
        return [
            (name, project(points[labels == code]), color)
            for name, code, color in (
                ("background", 0, "#1f77b4"),
                ("lesion", 1, "#ff7f0e"),
                ("unlabelled", -1, "#7f7f7f"),
            )
            if np.any(labels == code)
        ]

    both = np.concatenate([project(local.samples), project(mapped)])
    lo, hi = np.percentile(both, 1, axis=0), np.percentile(both, 99, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    limits = (
        lo[0] - 0.1 * span[0],
        hi[0] + 0.1 * span[0],
        lo[1] - 0.1 * span[1],
        hi[1] + 0.1 * span[1],
    )
    before = svg.scatter(
        groups(local.samples), ellipses, "embeddings, as they are", "axis 1", limits
    )
    after = svg.scatter(groups(mapped), ellipses, "after the Bures map", "axis 1", limits)
    return before + after


def site_panel(name: str, folder: ShiftFolder, fallback: Reference | None) -> str:
    """One site's section; says so when the site's private files are not here."""
    title = f"<section><h2>{html.escape(name)}</h2>"
    reference = folder.load_reference() or fallback
    if reference is None or not folder.local_path.is_file():
        return title + "<p>This site's private files are not here.</p></section>"
    local = folder.load_local()
    return (
        title
        + "<h3>Descriptors (mean ± sd over cases)</h3>"
        + _descriptor_table(local, reference)
        + "<h3>Intensities and embeddings</h3>"
        + _intensity_chart(local, reference)
        + "<br>"
        + _embedding_charts(local, reference)
        + "</section>"
    )


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
    names = sorted(set(diagnosis.get("sites", {})) | set(folders))
    panels = "".join(
        site_panel(n, folders[n], fallback)
        if n in folders
        else f"<section><h2>{html.escape(n)}</h2><p>This site's private files are not here: "
        "in a deployment they stay at the hospital (run <code>fedshift diagnose</code> there "
        "with <code>--site-work</code>).</p></section>"
        for n in names
    )
    body = f"""<!doctype html><html><head><meta charset="utf-8">
<title>FedShift shift diagnosis: {html.escape(run.name)}</title><style>{_STYLE}</style></head>
<body><h1>Shift diagnosis: {html.escape(run.name)}</h1>
<p>Statistics of the global model after round {diagnosis.get("after_round", "?")}, securely
aggregated over the sites (the coordinator saw only their sum). Each site reported the scalars
below. The verdict rests on the three similarities: how much a site's cases look like the rest
of the federation's cases (1 alike, 0 unlike), per kind of shift; below 0.5 counts as shifted.
Acquisition is judged on the raw images (air noise, contrast, non-uniformity, sharpness),
population on the lesion load the global model predicts, annotation on how the site's labels
disagree with the model's predictions. The distances (intensity W1, embedding BW, lesion-load
histogram distances) compare each site with a reference that contains every site, itself
included: they rank sites but do not say which one moved.</p>
<p>A verdict is relative to this federation: a site whose scanner differs from every other
site's is shifted here, even if it is the scanner others call the reference.</p>
{verdict_table(diagnosis)}{panels}</body></html>"""
    target = Path(out) if out else run / "diagnosis.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body)
    return target
