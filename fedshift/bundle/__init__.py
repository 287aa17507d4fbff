"""Model packages in MONAI Bundle layout: what a run ends with and what a site uses.

- :func:`write_bundle`: the federation's global model (coordinator, end of a run).
- :func:`site_bundle`: the same package plus one site's own intensity map.
- :func:`bundle_from_run`: a package from a finished run folder.
- :func:`adapted_bundle`: a package with weights adapted at a site (``fedshift adapt``).
- :func:`load_bundle`: load and check a package (:class:`ModelBundle`), with the
  federation's reference when the package carries one.

Layout and metadata: :mod:`fedshift.bundle.layout`. A package holds weights and
aggregate numbers only; it leaves no patient data anywhere.
"""

from fedshift.bundle.derived import adapted_bundle, package_digest, site_bundle
from fedshift.bundle.from_run import RunSummary, bundle_from_run, run_summary, training_spacing
from fedshift.bundle.io import ModelBundle, load_bundle, write_bundle
from fedshift.bundle.layout import IntensityReference, run_config_hash

__all__ = [
    "IntensityReference",
    "ModelBundle",
    "RunSummary",
    "adapted_bundle",
    "bundle_from_run",
    "load_bundle",
    "package_digest",
    "run_config_hash",
    "run_summary",
    "site_bundle",
    "training_spacing",
    "write_bundle",
]
