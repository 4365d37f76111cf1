"""Figures for every emotune plot (confusion matrices, learning curves, timelines, fold curves)."""
from __future__ import annotations


def new_figure(**kw):
    """A bare `Figure` on the Agg canvas: what every emotune plot draws on, so no plot touches pyplot's global state
    or the backend of the program that imports emotune. Close nothing afterwards: it is garbage-collected."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig
