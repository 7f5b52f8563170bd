"""Loss curves as PNG (matplotlib, headless)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from retriever.atomic import atomic_path


def plot_losses(steps: Sequence[dict], path: str | os.PathLike, title: str, evals: Sequence[dict] = ()) -> None:
    """``steps``: dicts with ``step`` and ``loss``; ``evals``: dicts with ``step`` and a metric, on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    x = np.array([s["step"] for s in steps])
    y = np.array([s["loss"] for s in steps])
    ax.plot(x, y, color="0.75", lw=0.8, label="loss per step")
    window = max(1, len(y) // 20)
    if len(y) >= window > 1:
        smooth = np.convolve(y, np.ones(window) / window, mode="valid")
        ax.plot(x[window - 1:], smooth, color="C0", lw=1.6, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)  # a long model path stays inside the figure
    metric_names = [k for k in (evals[0] if evals else {}) if k not in ("step", "epoch")]
    handles = ax.get_legend_handles_labels()
    if metric_names:
        ax2 = ax.twinx()
        name = metric_names[0]
        ax2.plot([e["step"] for e in evals], [e[name] for e in evals], "o-", color="C3", label=f"held-out {name}")
        ax2.set_ylabel(f"held-out {name}")
        more = ax2.get_legend_handles_labels()
        handles = (handles[0] + more[0], handles[1] + more[1])
    # one legend under the axes, so it never covers the curves
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(*handles, loc="lower center", ncol=len(handles[0]), fontsize=8, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
