"""SVG drawings of loss curves (matplotlib, Agg backend; the optional ``plot`` extra)."""

from __future__ import annotations

import io

from service.errors import Kind, ServiceError
from service.schemas import CurveResponse


def curve_svg(curve: CurveResponse, title: str) -> bytes:
    """The loss (top) and its derivative (bottom) along the curve's variable. The lines
    carry the ids ``loss`` and ``gradient`` in the SVG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise ServiceError(
            Kind.NOT_IMPLEMENTED, "Not implemented", "drawing curves needs matplotlib: pip install 'lossd[plot]'"
        ) from None
    matplotlib.rcParams["svg.hashsalt"] = "lossd"  # stable ids: the same curve, the same bytes
    figure = Figure(figsize=(6, 5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    (loss_line,) = top.plot(curve.x, curve.loss, color="#1f77b4")
    loss_line.set_gid("loss")
    top.set_ylabel("loss")
    top.set_title(title)
    if curve.gradient is not None:
        (grad_line,) = bottom.plot(curve.x, curve.gradient, color="#d62728")
        grad_line.set_gid("gradient")
        bottom.set_ylabel("d loss / dx")
    else:
        bottom.text(0.5, 0.5, "no gradients for this loss", ha="center", va="center", transform=bottom.transAxes)
    bottom.set_xlabel(curve.variable)
    for axes in (top, bottom):
        axes.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
