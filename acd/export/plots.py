"""The card's plots, as PNG bytes that are identical for identical inputs.

matplotlib stamps "Software: matplotlib version ..." into PNG metadata by default; metadata={"Software":
None} drops it, and with the Agg canvas (no pyplot global state, no display), fixed size, dpi and the
bundled DejaVu font the pixels are a pure function of the data on a given matplotlib version.
"""
from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MODALITY_COLORS = {"image": "#4C72B0", "video": "#DD8452", "audio": "#55A868"}
PNG_KW = dict(format="png", dpi=100, metadata={"Software": None})


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, **PNG_KW)
    return buf.getvalue()


def bar_by_type(counts: dict[tuple[str, str], tuple[int, int]]) -> bytes:
    """Pairs per (modality, type), split into q-a-c and q-c-c. counts[(m, t)] = (qac, qcc)."""
    labels = [f"{m}/{t}" for m, t in counts]
    qac = [v[0] for v in counts.values()]
    qcc = [v[1] for v in counts.values()]
    fig = Figure(figsize=(8, max(3.0, 0.28 * len(labels) + 1)))
    ax = fig.add_subplot(1, 1, 1)
    y = list(range(len(labels)))
    ax.barh(y, qac, color="#4C72B0", label="q-a-c")
    ax.barh(y, qcc, left=qac, color="#C44E52", label="q-c-c")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("pairs")
    ax.set_title("Pairs per modality and instruction type")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return png_bytes(fig)


def bar_simple(counts: dict[str, int], title: str, xlabel: str = "pairs") -> bytes:
    labels = list(counts)
    fig = Figure(figsize=(7, max(2.5, 0.3 * len(labels) + 1)))
    ax = fig.add_subplot(1, 1, 1)
    y = list(range(len(labels)))
    ax.barh(y, [counts[k] for k in labels], color="#4C72B0")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return png_bytes(fig)


def word_histogram(words_by_modality: dict[str, dict[int, int]]) -> bytes:
    """Chosen-caption lengths per modality, given as {words: pairs} (a histogram's input, not a list of
    every pair's count: the plot is the same, as histogram counts do not depend on the values' order)."""
    import numpy as np

    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    top = max((max(v) for v in words_by_modality.values() if v), default=1)
    bins = list(range(0, top + 10, max(1, (top + 10) // 40)))
    for m, v in words_by_modality.items():
        if v:
            words = sorted(v)
            # One int per pair only here, for matplotlib's binning (8 bytes a pair, freed at once).
            ax.hist(np.repeat(np.array(words, np.int64), [v[w] for w in words]), bins=bins, alpha=0.6, label=m,
                    color=MODALITY_COLORS.get(m))
    ax.set_xlabel("words in chosen caption")
    ax.set_ylabel("pairs")
    ax.set_title("Chosen caption length")
    ax.legend()
    fig.tight_layout()
    return png_bytes(fig)
