"""Plots of a suite's results (matplotlib's object API on the Agg canvas: no pyplot, no display).

Each function takes plain values (method -> metric -> per-seed list, or per-run loss histories) and
writes one figure as a PNG (:data:`DPI`) and, beside it, the same figure as SVG (text kept as text, for
papers); it returns the PNG's path. None of them knows about the store. A metric declared a
``"fraction"`` by its evaluator (looked up in a :class:`~sslbench.bench.tables.Catalog`, by default the
installed evaluators') is drawn in %; any other as the number it is. An accuracy axis that does not
start at 0 says where it starts, in its label and in a note on the plot.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sslbench.bench.tables import Catalog, mean_std
from sslbench.sdk.files import atomic_path

Values = Mapping[str, Mapping[str, Sequence[float]]]
"""method -> metric -> one value per seed"""

DPI = 150
#: every figure is written in these formats, the PNG first (the path the functions return)
FORMATS = ("png", "svg")


def _percent(metric: str, catalog: Catalog | None = None) -> bool:
    return (catalog or Catalog()).metric(metric).percent


def _scale(metric: str, catalog: Catalog | None = None) -> float:
    return 100.0 if _percent(metric, catalog) else 1.0


def _label(metric: str, catalog: Catalog | None = None) -> str:
    return f"{metric} (%)" if _percent(metric, catalog) else metric


def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas whose layout keeps titles, labels and the suptitle apart."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as ``path`` (PNG) and as the same name with each other suffix of
    :data:`FORMATS`, each atomically; returns ``path``."""
    from matplotlib import rc_context

    path.parent.mkdir(parents=True, exist_ok=True)
    for fmt in FORMATS:
        target = path if fmt == FORMATS[0] else path.with_suffix(f".{fmt}")
        with atomic_path(target) as tmp, rc_context({"svg.fonttype": "none", "svg.hashsalt": "sslbench"}):
            fig.savefig(tmp, dpi=DPI, format=fmt)
    return path


def _colours(n: int) -> list:  # type: ignore[type-arg]
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def metric_bars(title: str, methods: Sequence[str], values: Values, metrics: Sequence[str], path: Path,
                catalog: Catalog | None = None) -> Path | None:
    """Grouped bars: one group per method, one bar per metric (mean over seeds), error bars of one
    sample standard deviation, and each seed's value as a dot. Declared fractions are shown in %.
    Returns None when no method has any of ``metrics``."""
    present = [m for m in methods if any(values.get(m, {}).get(k) for k in metrics)]
    if not present:
        return None
    catalog = catalog or Catalog()
    width = 0.8 / len(metrics)
    fig = _figure(max(5.0, 0.75 * len(present) * max(1, len(metrics)) ** 0.5 + 2), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for j, (metric, colour) in enumerate(zip(metrics, _colours(len(metrics)))):
        s = _scale(metric, catalog)
        labelled = False
        for i, method in enumerate(present):
            seeds = [s * v for v in values.get(method, {}).get(metric, [])]
            x = i - 0.4 + width * (j + 0.5)
            if not seeds:
                continue
            mean, std = mean_std(seeds)
            ax.bar(x, mean, width * 0.9, color=colour, alpha=0.85, label=None if labelled else _label(metric, catalog),
                   yerr=std if len(seeds) > 1 else None, capsize=3, error_kw={"elinewidth": 1})
            ax.plot([x] * len(seeds), seeds, "o", color="black", markersize=2.5, zorder=3)
            labelled = True
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xticks(range(len(present)))
    ax.set_xticklabels(present, rotation=30, ha="right", fontsize=9)
    percent = all(_percent(m, catalog) for m in metrics)
    ax.set_ylabel("accuracy (%)" if percent else ", ".join(metrics), fontsize=9)
    if percent:  # zoomed on the values, and saying so: bars that do not start at 0 are labelled as such
        low = min((100 * v for m in present for k in metrics for v in values.get(m, {}).get(k, [])), default=0.0)
        bottom = max(0.0, math.floor(low / 10) * 10 - 10)
        ax.set_ylim(bottom, 100)
        if bottom > 0:
            ax.set_ylabel(f"accuracy (%), axis starts at {bottom:g}", fontsize=9)
            ax.annotate(f"y axis starts\nat {bottom:g} %, not 0", xy=(1.01, 0), xycoords="axes fraction", xytext=(4, 0),
                        textcoords="offset points", fontsize=8, color="dimgray", ha="left", va="bottom")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def metric_panels(title: str, methods: Sequence[str], values: Values, metrics: Sequence[str], path: Path,
                  catalog: Catalog | None = None) -> Path | None:
    """One small bar panel per metric (each on its own scale): mean ± std over seeds per method,
    seeds as dots. For metrics of different units (MSE, FID, ARI, position error)."""
    metrics = [k for k in metrics if any(values.get(m, {}).get(k) for m in methods)]
    if not metrics:
        return None
    catalog = catalog or Catalog()
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = _figure(3.4 * cols, 2.8 * rows)
    colours = dict(zip(methods, _colours(len(methods))))
    for n, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, n + 1)
        present = [m for m in methods if values.get(m, {}).get(metric)]
        s = _scale(metric, catalog)
        for i, method in enumerate(present):
            seeds = [s * v for v in values[method][metric]]
            mean, std = mean_std(seeds)
            ax.bar(i, mean, 0.7, color=colours[method], alpha=0.85, yerr=std if len(seeds) > 1 else None, capsize=3)
            ax.plot([i] * len(seeds), seeds, "o", color="black", markersize=2.5, zorder=3)
        ax.set_xticks(range(len(present)))
        ax.set_xticklabels(present, rotation=35, ha="right", fontsize=8)
        ax.set_title(_label(metric, catalog), fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def style_scatter(title: str, methods: Sequence[str], values: Values, content: str, styles: Sequence[str], path: Path,
                  catalog: Catalog | None = None) -> Path | None:
    """Style against content: one panel per style metric, x = the content metric, y = the style
    metric, one point per method (mean, with ± std bars over seeds), labelled. A method high on both
    axes keeps content and style."""
    styles = [s for s in styles if any(values.get(m, {}).get(s) and values.get(m, {}).get(content) for m in methods)]
    if not styles:
        return None
    catalog = catalog or Catalog()
    fig = _figure(4.2 * len(styles), 3.8)
    colours = dict(zip(methods, _colours(len(methods))))
    for n, style in enumerate(styles):
        ax = fig.add_subplot(1, len(styles), n + 1)
        for method in methods:
            xs, ys = values.get(method, {}).get(content), values.get(method, {}).get(style)
            if not xs or not ys:
                continue
            (mx, sx), (my, sy) = mean_std([_scale(content, catalog) * v for v in xs]), mean_std([_scale(style, catalog) * v for v in ys])
            ax.errorbar(mx, my, xerr=sx or None, yerr=sy or None, fmt="o", color=colours[method], capsize=3, markersize=6)
            ax.annotate(method, (mx, my), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(f"content: {_label(content, catalog)}", fontsize=9)
        ax.set_ylabel(f"style: {_label(style, catalog)}", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.margins(0.15)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def training_curves(title: str, histories: Mapping[str, Mapping[int, Mapping[str, Sequence[float]]]], path: Path) -> Path | None:
    """The curve of every logged loss term (``histories``: method -> seed -> term -> values, with the
    x positions in epochs under ``"_epoch"``, else one value per epoch):
    one row of panels per method, one panel per term (``loss`` first, each on its own scale), one
    line per seed."""
    methods = [m for m, runs in histories.items() if any(h for h in runs.values())]
    if not methods:
        return None
    terms = {m: sorted({t for h in histories[m].values() for t in h if not t.startswith("_")}, key=lambda t: (t != "loss", t)) for m in methods}
    cols = max(len(t) for t in terms.values())
    fig = _figure(2.5 * cols + 0.6, 1.9 * len(methods) + 0.5)
    for r, method in enumerate(methods):
        for c, term in enumerate(terms[method]):
            ax = fig.add_subplot(len(methods), cols, r * cols + c + 1)
            for seed, history in histories[method].items():
                ys = history.get(term, [])
                xs = history.get("_epoch") or list(range(1, len(ys) + 1))
                if ys:
                    ax.plot(xs[: len(ys)], ys, marker="o" if len(ys) < 15 else None, markersize=3,
                            linewidth=1, label=f"seed {seed}")
            ax.set_title(f"{method}: {term}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if r == len(methods) - 1:
                ax.set_xlabel("epoch", fontsize=7)
            if c == 0 and len(histories[method]) > 1:
                ax.legend(fontsize=6)
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


__all__ = ["DPI", "FORMATS", "metric_bars", "metric_panels", "style_scatter", "training_curves"]
