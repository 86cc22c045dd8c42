"""Plots of evaluation runs (matplotlib, Agg: no display needed): grouped bars per split and
question type, each bar labelled with its value and question count, and recall@K curves of one
or several runs on one axis (``eval report`` and ``eval compare`` draw them). Percentages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["grouped_bars", "recall_curves", "report_plots"]

Cell = tuple[float | None, int]       # (value in percent or None = no question, count)
_LABELS = {"recall": "Recall", "pseudo_recall": "Pseudo-recall", "entity_recall": "Entity recall"}
_STYLES = {"recall": "-", "pseudo_recall": "--", "entity_recall": ":"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grouped_bars(groups: Mapping[str, Mapping[str, Cell]], path: Path, title: str,
                 ylabel: str = "%") -> Path:
    """One cluster of bars per group (a split), one bar per series (a question type); above
    each bar its value, under it ``n=count``; a category without questions is marked n/a."""
    plt = _pyplot()
    series = list(dict.fromkeys(s for cells in groups.values() for s in cells))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + 0.55 * len(groups) * len(series)), 4.4))
    colors = plt.get_cmap("tab10")
    for j, name in enumerate(series):
        xs, values = [], []
        for i, cells in enumerate(groups.values()):
            xs.append(i + (j - (len(series) - 1) / 2) * width)
            values.append(cells.get(name, (None, 0)))
        bars = ax.bar(xs, [v if v is not None else 0 for v, _ in values], width * 0.92,
                      label=name, color=colors(j % 10))
        for bar, (value, count) in zip(bars, values):
            x = bar.get_x() + bar.get_width() / 2
            ax.text(x, (value or 0) + 1.5, "n/a" if value is None else f"{value:.1f}",
                    ha="center", va="bottom", fontsize=7.5)
            ax.text(x, -2.5, f"n={count}", ha="center", va="top", fontsize=6.5, color="#555")
    ax.set_xticks(range(len(groups)), list(groups))
    ax.tick_params(axis="x", length=0, pad=14)
    ax.set_ylim(0, 112)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    if len(series) > 1:
        ax.legend(fontsize=8, ncols=min(len(series), 5), loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def recall_curves(runs: Sequence[tuple[str, Mapping[str, Any]]], path: Path,
                  title: str = "Retrieval @K") -> Path | None:
    """Recall, pseudo-recall and entity recall against K for every run on one axis (a color per
    run, a line style per metric); None when no run has retrieval numbers."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = plt.get_cmap("tab10")
    drawn = False
    all_ks: set[int] = set()
    for i, (label, retrieval) in enumerate(runs):
        ks = list((retrieval or {}).get("ks") or [])
        for j, (metric, style) in enumerate(_STYLES.items()):
            values = (retrieval or {}).get(metric)
            if not values or not ks:
                continue
            one = len(runs) == 1   # one run: a color per metric; several: a color per run
            name = _LABELS[metric] if one else f"{label}: {_LABELS[metric]}"
            ax.plot(ks, [values[f"@{k}"] for k in ks], style, marker="o", markersize=4,
                    color=colors((j if one else i) % 10), label=name)
            all_ks.update(ks)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ticks = sorted(all_ks)
    if len(ticks) > 1:
        ax.set_xscale("log")
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set(xlabel="K (passages)", ylabel="%", title=title, ylim=(0, 102))
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7.5, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _accuracy_groups(qa: Mapping[str, Any]) -> dict[str, dict[str, Cell]]:
    return {split: {t: (v["accuracy"], v["count"]) for t, v in types.items()}
            for split, types in (qa.get("breakdown") or {}).items()}


def _retrieval_groups(retrieval: Mapping[str, Any]) -> dict[str, dict[str, Cell]]:
    """Per split: the metrics at the largest headline cut-off retrieved (5, else 1)."""
    ks = retrieval.get("ks") or []
    k = 5 if 5 in ks else ks[-1]
    out = {}
    for split, values in (retrieval.get("per_split") or {}).items():
        counts = values.get("counts") or {}
        out[split] = {f"{_LABELS[m]}@{k}": ((values.get(m) or {}).get(f"@{k}"),
                                            counts.get(m, values.get("count", 0)))
                      for m in _STYLES if retrieval.get(m)}
    return out


def report_plots(report: Mapping[str, Any], run_dir: Path) -> list[str]:
    """The PNGs of one run's report, written into its folder; their file names."""
    written = []
    retrieval = report.get("retrieval") or {}
    if recall_curves([("run", retrieval)], run_dir / "recall_at_k.png") is not None:
        written.append("recall_at_k.png")
    if len(retrieval.get("per_split") or {}) > 0:
        grouped_bars(_retrieval_groups(retrieval), run_dir / "retrieval_by_split.png",
                     "Retrieval by split")
        written.append("retrieval_by_split.png")
    qa = report.get("qa") or {}
    if qa.get("breakdown"):
        grouped_bars(_accuracy_groups(qa), run_dir / "accuracy.png",
                     "Accuracy by split and question type", "accuracy %")
        written.append("accuracy.png")
    return written
