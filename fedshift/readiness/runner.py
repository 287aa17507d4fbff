"""Run readiness on a site folder: check every case (in a process pool), judge the site,
write ``readiness.json`` and ``readiness.html``.

Input files are only read, never modified or moved, and the output folder may not lie
inside the site folder. A bad case never stops the run: its problems become findings.
"""

from __future__ import annotations

import base64
import json
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from fedshift import atomic
from fedshift.data.layout import SiteLayout, discover_site
from fedshift.data.nifti import read_volume
from fedshift.errors import DataError, UsageError
from fedshift.findings import finding
from fedshift.readiness.assemble import build_report
from fedshift.readiness.case_check import CaseResult, CaseTask, check_case
from fedshift.readiness.report_html import render_html
from fedshift.readiness.site_config import ReadinessConfig, load_site_config
from fedshift.render.mosaic import label_center, render_mosaic
from fedshift.render.png import png_bytes

log = logging.getLogger(__name__)

JSON_NAME = "readiness.json"
HTML_NAME = "readiness.html"


def default_workers() -> int:
    """``min(2, cpu count)``: readiness shares the machine with the site's other work."""
    return max(1, min(2, os.cpu_count() or 1))


def default_out_dir(site_dir: str | os.PathLike[str]) -> Path:
    """``./readiness/<site name>/`` in the current directory (never inside the input)."""
    return Path.cwd() / "readiness" / Path(site_dir).resolve().name


def _failed(task: CaseTask, exc: BaseException) -> CaseResult:
    message = f"the worker checking this case failed: {type(exc).__name__}: {exc}"
    result = CaseResult(task.case.case_id, task.case.split)
    result.findings.append(finding("check_failed", message, task.rel(task.case.image)))
    return result


def run_tasks(tasks: Sequence[CaseTask], workers: int) -> list[CaseResult]:
    """:func:`check_case` on every task, in order; a process pool when ``workers > 1``.

    Workers are spawned (not forked), so a parent that has started threads (torch, Ray)
    cannot deadlock them. If the pool cannot start at all (e.g. the parent's main module
    cannot be re-imported), the cases are checked in this process instead; a worker lost
    later (e.g. killed for memory) gives ``check_failed`` on the cases it held.
    """
    if workers <= 1 or len(tasks) <= 1:
        return _run_serial(tasks)
    context = multiprocessing.get_context("spawn")
    results: list[CaseResult] = []
    step = max(1, len(tasks) // 10)
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        futures = [pool.submit(check_case, task) for task in tasks]
        for i, (task, future) in enumerate(zip(tasks, futures, strict=True), 1):
            try:
                results.append(future.result())
            except BrokenProcessPool as exc:
                if not results:
                    log.warning("process pool failed to start (%s); checking in-process", exc)
                    break
                results.append(_failed(task, exc))
            except Exception as exc:  # e.g. a result that cannot be unpickled
                results.append(_failed(task, exc))
            _progress(i, len(tasks), step)
    return results if results else _run_serial(tasks)


def _run_serial(tasks: Sequence[CaseTask]) -> list[CaseResult]:
    results = []
    step = max(1, len(tasks) // 10)
    for i, task in enumerate(tasks, 1):
        results.append(check_case(task))
        _progress(i, len(tasks), step)
    return results


def _progress(done: int, total: int, step: int) -> None:
    if done % step == 0 or done == total:
        log.info("checked %d/%d cases", done, total)


def _mosaic_order(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Cases worth a look first: readable but flagged, then usable labelled, then usable."""

    def rank(case: dict[str, Any]) -> int:
        codes = {f["code"] for f in case["findings"] if f["severity"] == "error"}
        if case["usable"]:
            return 1 if case["has_label"] else 2
        return 0 if codes and "unreadable" not in codes and "check_failed" not in codes else 3

    return sorted((c for c in report["cases"] if rank(c) < 3), key=rank)


def render_mosaics(layout: SiteLayout, report: dict[str, Any], n: int) -> list[dict[str, str]]:
    """Up to ``n`` mosaics as ``{"case", "caption", "png_base64"}`` (see :func:`_mosaic_order`)."""
    by_key = dict(zip(case_keys_of(report), layout.cases, strict=True))
    mosaics = []
    for case_entry in _mosaic_order(report)[:n]:
        case = by_key[case_entry["case"]]
        try:
            image = read_volume(case.image)
            label = read_volume(case.label).data if case.label is not None else None
        except DataError:
            continue
        if image.data.ndim != 3:
            continue
        if label is not None and label.shape != image.data.shape:
            label = None
        center = label_center(label) if label is not None else None
        rgb = render_mosaic(
            np.nan_to_num(image.as_float32()),
            label,
            image.zooms,
            center=center,
            affine=image.affine,
        )
        status = "usable" if case_entry["usable"] else "not usable"
        mosaics.append(
            {
                "case": case_entry["case"],
                "caption": f"{case_entry['case']} ({case_entry['split']}, {status})",
                "png_base64": base64.b64encode(png_bytes(rgb)).decode("ascii"),
            }
        )
    return mosaics


def case_keys_of(report: dict[str, Any]) -> list[str]:
    return [c["case"] for c in report["cases"]]


def _check_out_dir(out_dir: Path, site_root: Path) -> Path:
    out = out_dir.resolve()
    if out == site_root or site_root in out.parents:
        raise UsageError(
            f"output folder {str(out_dir)!r} is inside the site folder {str(site_root)!r}; "
            "readiness never writes into its input"
        )
    return out


def run_readiness(
    site_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    config: ReadinessConfig | str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Check a site folder and write ``readiness.json`` and ``readiness.html``.

    Parameters
    ----------
    site_dir : folder in nnU-Net v2 raw layout (see :mod:`fedshift.data.layout`).
    out_dir : where the two files go (created); default :func:`default_out_dir`.
        Must not lie inside ``site_dir``.
    config : a :class:`ReadinessConfig`, or the path of a site YAML (attestations and
        readiness settings), or ``None`` for defaults.
    workers : worker processes; default the config's, else :func:`default_workers`.

    Returns
    -------
    The ``readiness.json`` content: ``level`` ("A".."D"), ``n_cases``, ``n_usable``,
    ``findings`` (site level), ``cases`` (``case``, ``split``, ``usable``, ``findings``),
    ``iqm`` ({case: {metric: value}}), plus ``shareable`` (the only part meant to leave
    the site), ``label_stats``, ``raters``, ``attestations``, ``iqm_outliers``.

    Raises
    ------
    UsageError
        ``site_dir`` is not a folder, ``out_dir`` is inside it or cannot be written, or
        ``workers`` < 1; :class:`~fedshift.errors.ConfigError` for a bad config.
    """
    layout = discover_site(site_dir)
    cfg = config if isinstance(config, ReadinessConfig) else load_site_config(config)
    out = _check_out_dir(Path(out_dir) if out_dir else default_out_dir(site_dir), layout.root)
    n_workers = workers if workers is not None else cfg.readiness.workers or default_workers()
    if n_workers < 1:
        raise UsageError(f"workers must be at least 1, got {n_workers}")
    try:  # fail before hours of checks, not after
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {str(out)!r}: {exc}") from exc
    log.info("readiness of %s: %d cases, %d workers", layout.root, len(layout.cases), n_workers)
    tasks = [CaseTask(c, layout.root, layout.modality, cfg.readiness) for c in layout.cases]
    report = build_report(layout, cfg, run_tasks(tasks, n_workers))
    mosaics = render_mosaics(layout, report, cfg.readiness.n_mosaics)
    try:
        atomic.write_text(out / JSON_NAME, json.dumps(report, indent=2, allow_nan=False) + "\n")
        atomic.write_text(out / HTML_NAME, render_html(report, mosaics))
    except OSError as exc:
        raise UsageError(f"cannot write the report to {str(out)!r}: {exc}") from exc
    log.info(
        "level %s: %d of %d cases usable; wrote %s",
        report["level"],
        report["n_usable"],
        report["n_cases"],
        out,
    )
    return report


def usable_cases(report: dict[str, Any], split: str | None = None) -> set[str]:
    """Keys of the usable cases of a readiness report (optionally of one split)."""
    return {
        c["case"] for c in report["cases"] if c["usable"] and (split is None or c["split"] == split)
    }
