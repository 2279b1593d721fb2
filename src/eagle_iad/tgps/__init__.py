"""TGPS: threshold-guided prompt selection (docs/METHOD.md §2).

The expert's image score decides the textual prior ("predicted as normal / anomalous"); for
anomalous predictions its anomaly map is also turned into a visual prompt, the query image with
red boxes on the suspected defects. :mod:`eagle_iad.tgps.regions` finds those boxes and
:mod:`eagle_iad.tgps.render` draws them (or a contour, heatmap or mask alternative).
"""
