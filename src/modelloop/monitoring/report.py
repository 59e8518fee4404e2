"""Where the monitoring report used to be rendered; it is `modelloop.reports` now.

Kept so that code importing `render_html` and `svg_line_chart` from here keeps working while
it moves over.
"""

from __future__ import annotations

from modelloop.reports import render_monitoring, svg_line_chart

render_html = render_monitoring

__all__ = ["render_html", "svg_line_chart"]
