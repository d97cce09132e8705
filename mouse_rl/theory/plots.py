"""Figures of the theory: predicted learning curves and the strategy graph (matplotlib)."""
from __future__ import annotations

import numpy as np

from .classes import STIMULUS_SIDE_NAMES

__all__ = ["plot_trajectory", "plot_strategy_graph", "NODE_POSITIONS", "STIMULUS_SIDE_COLORS"]

#: Layout of the four strategy nodes (code -> (x, y)).
NODE_POSITIONS = {0: (0.0, 0.0), 1: (1.0, 0.8), 2: (1.0, -0.8), 3: (2.0, 0.0)}
#: Line colour of each stimulus side's P(R | side) curve (left, zero, right).
STIMULUS_SIDE_COLORS = dict(zip(STIMULUS_SIDE_NAMES.values(), ("tab:blue", "0.4", "tab:red")))


def plot_trajectory(result, ax=None, init: int = 0, linestyle="--", label_prefix="theory "):
    """Session-averaged P(R | left/zero/right) of one trajectory of a :class:`MeanFieldResult`."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    p = result.session_p_right_side()[init]
    sessions = np.arange(1, p.shape[0] + 1)
    names = list(STIMULUS_SIDE_COLORS)
    for j in (1, 0, 2):  # zero first and wide, so that an unassociated stimulus's equal curve shows on top
        name = names[j]
        wide = dict(lw=4, alpha=0.35) if name == STIMULUS_SIDE_NAMES[0] else {}
        ax.plot(sessions, p[:, j], linestyle, color=STIMULUS_SIDE_COLORS[name], label=f"{label_prefix}{name}",
                **wide)
    ax.set_xlabel("session")
    ax.set_ylabel("P(R | stimulus)")
    ax.set_ylim(0, 1)
    return ax


def plot_strategy_graph(graph, ax=None, visited=None, title="strategy graph"):
    """Nodes = strategies, arrows = saddle escapes; ``visited``: code sequences drawn as thin paths."""
    import matplotlib.pyplot as plt

    from ..strategy import STRATEGY_NAMES

    ax = ax or plt.gca()
    saddles = {fp.strategy for fp in graph.fixed_points if fp.unstable}
    for code, (x, y) in NODE_POSITIONS.items():
        face = "mistyrose" if code in saddles else "honeydew"
        ax.scatter([x], [y], s=2200, c=face, edgecolors="k", zorder=2)
        ax.text(x, y, STRATEGY_NAMES[code], ha="center", va="center", fontsize=9, zorder=3)
    for src, dst in sorted(graph.strategy_edges()):
        (x0, y0), (x1, y1) = NODE_POSITIONS[src], NODE_POSITIONS[dst]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", lw=2, color="k", shrinkA=24, shrinkB=24), zorder=1)
    rng = np.random.default_rng(0)
    for seq in visited or []:
        pts = np.array([NODE_POSITIONS[int(c)] for c in seq], dtype=float) + rng.normal(0, 0.06, (len(seq), 2))
        ax.plot(pts[:, 0], pts[:, 1], "-o", lw=1, ms=3, alpha=0.6)
    ax.set_xlim(-0.5, 2.5)
    ax.set_ylim(-1.3, 1.3)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
