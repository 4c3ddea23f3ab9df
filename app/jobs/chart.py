"""A job's training curves as a PNG: train and eval loss, and each metric per epoch."""

import io
from dataclasses import dataclass


@dataclass(frozen=True)
class Curves:
    train_loss: list[tuple[float, float]]  # (epoch, loss), every few steps
    eval_loss: list[tuple[float, float]]  # (epoch, loss)
    metrics: dict[str, list[tuple[float, float]]]  # name -> (epoch, value)


def render_png(title: str, curves: Curves) -> bytes:
    """Rendered with matplotlib's object API (no pyplot state), so it is safe in threads."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    losses, scores = figure.subplots(1, 2)
    figure.suptitle(title)
    if curves.train_loss:
        losses.plot(*zip(*curves.train_loss, strict=True), label="train loss", linewidth=1)
    if curves.eval_loss:
        losses.plot(*zip(*curves.eval_loss, strict=True), "o-", label="eval loss")
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.set_title("loss")
    for name, points in sorted(curves.metrics.items()):
        scores.plot(*zip(*points, strict=True), "o-", label=name)
    scores.set_xlabel("epoch")
    scores.set_title("eval metrics")
    for axes in (losses, scores):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
        else:
            axes.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=axes.transAxes)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
