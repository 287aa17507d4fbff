"""Applying a model package to scans: ``fedshift predict`` and ``fedshift evaluate``.

:mod:`~fedshift.inference.segment` takes one scan through the training pipeline's own
steps and back to its grid; :mod:`~fedshift.inference.predict` writes masks and their
tables; :mod:`~fedshift.inference.evaluate` scores the same predictions against labels.
Everything here runs at a site and stays there.
"""
