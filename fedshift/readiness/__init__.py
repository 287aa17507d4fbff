"""Site data readiness: per-case checks, image quality metrics, MIDaR level, report.

Entry points: :func:`fedshift.readiness.runner.run_readiness` (writes ``readiness.json``
and ``readiness.html``), :func:`fedshift.readiness.runner.usable_cases`,
:func:`fedshift.readiness.iqm.compute_iqms` and the level constants of
:mod:`fedshift.readiness.levels`. Only the level and the counts leave the site.
"""
