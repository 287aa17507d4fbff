"""The package's ``configs/inference.yaml``: a MONAI bundle workflow that runs FedShift's
own inference (the same code path as ``fedshift predict``)::

    python -m monai.bundle run --config_file MODEL/configs/inference.yaml \\
        --dataset_dir SCANS --output_dir OUT [--device cpu] [--probabilities true]

MONAI puts the bundle's root on ``sys.path`` before it runs the workflow
(``ConfigWorkflow.run``); :func:`bundle_root` finds the package there, so the command
works from any folder. ``--bundle_root DIR`` overrides it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fedshift.bundle.io import ModelBundle
from fedshift.bundle.layout import INFERENCE, METADATA, WEIGHTS
from fedshift.errors import BundleError, FedShiftError
from fedshift.inference.predict import predict_inputs


def is_package(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (METADATA, INFERENCE, WEIGHTS))


def bundle_root() -> str:
    """The package folder of the running MONAI workflow: the entry MONAI inserted at
    ``sys.path[1]`` when it is a package, else the first package on ``sys.path``, else
    the current folder when it is one.

    Raises
    ------
    BundleError
        no package is found (pass ``--bundle_root``).
    """
    candidates = sys.path[1:2] + sys.path + ["."]
    for entry in candidates:
        folder = Path(entry or ".")
        if is_package(folder):
            return str(folder.resolve())
    raise BundleError(
        "cannot tell which model package this workflow belongs to; pass --bundle_root <package>"
    )


def _flag(value: object) -> bool:
    """A command-line switch as MONAI's parser hands it over (bool, int or text)."""
    if isinstance(value, str):
        if value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if value.strip().lower() in ("", "0", "false", "no", "off", "none"):
            return False
        raise BundleError(f"probabilities={value!r} is not true or false")
    return bool(value)


def segment_folder(
    bundle: ModelBundle,
    dataset_dir: str | None,
    output_dir: str | None,
    device: str,
    probabilities: bool,
) -> dict:
    """The workflow's ``run`` step: :func:`fedshift.inference.predict.predict_inputs` on
    ``dataset_dir``, written to ``output_dir``. Raises when a scan failed (after the
    others were written), so the MONAI command exits non-zero."""
    if not dataset_dir or not output_dir:
        raise BundleError("pass --dataset_dir <folder of scans> and --output_dir <folder>")
    summary = predict_inputs(
        bundle,
        [Path(dataset_dir)],
        Path(output_dir),
        device=str(device),
        probabilities=_flag(probabilities),
    )
    failed = [c for c in summary["cases"] if c["status"] != "ok"]
    if failed:
        raise FedShiftError(
            f"{len(failed)} of {len(summary['cases'])} scans failed: "
            + "; ".join(f"{c['case']}: {c['reason']}" for c in failed)
        )
    return summary
