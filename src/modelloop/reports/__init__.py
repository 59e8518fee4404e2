"""Reports for people: the monitoring report, the demo summary and the dashboard's pages,
rendered from one family of Jinja2 templates into HTML with inline CSS, inline SVG charts and no
scripts."""

from modelloop.reports.charts import svg_bar_chart, svg_line_chart
from modelloop.reports.dashboard import render_dashboard, render_sign_in, render_ui_message
from modelloop.reports.render import render_demo, render_monitoring

__all__ = [
    "render_dashboard",
    "render_demo",
    "render_monitoring",
    "render_sign_in",
    "render_ui_message",
    "svg_bar_chart",
    "svg_line_chart",
]
