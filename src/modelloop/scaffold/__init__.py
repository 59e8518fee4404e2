"""`modelloop init --from FILE`: a commented project file proposed from the user's own table.

`propose` reads the table and decides the task, the time column, the features (and the columns
left out, with reasons), the windows and the model; `render` writes it as commented YAML and
`write` puts it at `DIR/modelloop.yaml`. Every user mistake is a `ModelloopError` naming the
file, column or option.
"""

from modelloop.scaffold.columns import Calendar, Exclusion, LeftOut
from modelloop.scaffold.leaks import Leak
from modelloop.scaffold.proposal import Proposal, propose
from modelloop.scaffold.render import render, write
from modelloop.scaffold.windows import Cadence, Windows

__all__ = [
    "Cadence",
    "Calendar",
    "Exclusion",
    "Leak",
    "LeftOut",
    "Proposal",
    "Windows",
    "propose",
    "render",
    "write",
]
