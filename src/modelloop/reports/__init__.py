"""Reports for people: the monitoring report and the demo summary, rendered from one family of
Jinja2 templates into self-contained HTML (inline CSS, inline SVG charts, no scripts)."""

from modelloop.reports.charts import svg_bar_chart, svg_line_chart
from modelloop.reports.render import render_demo, render_monitoring

__all__ = ["render_demo", "render_monitoring", "svg_bar_chart", "svg_line_chart"]
