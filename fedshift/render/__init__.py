"""Drawing for the reports: charts as inline SVG (:mod:`~fedshift.render.plots`), slice
mosaics with orientation letters (:mod:`~fedshift.render.mosaic`,
:mod:`~fedshift.render.orientation`), a PNG encoder (:mod:`~fedshift.render.png`) and the
Jinja2 environment the HTML pages are rendered with (:mod:`~fedshift.render.pages`).

Pure: imports numpy, matplotlib and jinja2 only (and :mod:`fedshift.errors`), never the
packages whose reports it draws, so that any of them may use it without a cycle.
"""
