"""The report's figures, drawn with matplotlib's object API (no pyplot state, no display needed).

Class names and setting labels are data: every text drawn goes through ``_plain``, so that a name like
``$x$`` is shown as written instead of being parsed as matplotlib math text (which fails on most names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from datamodules.configkit import atomic_write

RED, GREEN, GREY = "#c0392b", "#27ae60", "#b0b0b0"


def _plain(text) -> str:
    """``text`` as literal text: matplotlib reads an escaped dollar as a dollar sign, never as math."""
    return str(text).replace("$", r"\$")


def _save(fig: Figure, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110), durable=False)
    return path


def delta_sorted(names, delta, significant, title: str, path: Path) -> Path:
    """The paper's bar plot: every class's change in accuracy, sorted; significant changes coloured."""
    order = np.argsort(delta)
    d = 100 * np.asarray(delta)[order]
    sig = np.asarray(significant)[order]
    colors = [(RED if v < 0 else GREEN) if s else GREY for v, s in zip(d, sig)]
    fig = Figure(figsize=(max(6.0, min(14.0, 0.25 * len(d))), 4.0))
    ax = fig.add_subplot()
    ax.bar(np.arange(len(d)), d, color=colors, width=0.85)
    ax.axhline(
        100 * float(np.mean(delta)), color="black", lw=1, ls="--", label=f"mean change {100 * np.mean(delta):+.1f}"
    )
    ax.axhline(0, color="black", lw=0.5)
    if len(d) <= 40:
        ax.set_xticks(np.arange(len(d)), [_plain(names[i]) for i in order], rotation=60, ha="right", fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(d)} classes, sorted by change")
    ax.set_ylabel("change in class accuracy (points)")
    ax.set_title(_plain(title), fontsize=10)
    ax.bar([0], [0], color=RED, label="significantly lower")
    ax.bar([0], [0], color=GREEN, label="significantly higher")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def strength_curves(x, xticklabels, xlabel: str, mean_curve, curves: dict, hurt: list, path: Path) -> Path:
    """Accuracy against regularization strength: the mean over classes, and chosen classes (mean +- sd)."""
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    for name, (mean, sd) in curves.items():
        color = RED if name in hurt else GREEN
        ax.errorbar(
            x,
            100 * mean,
            yerr=100 * sd,
            color=color,
            alpha=0.8,
            marker="o",
            ms=3,
            lw=1.2,
            capsize=2,
            label=_plain(f"{name} ({'hurt' if name in hurt else 'helped'})"),
        )
    ax.plot(x, 100 * np.asarray(mean_curve), color="black", lw=2.5, marker="s", label="mean over classes")
    ax.set_xticks(x, [_plain(t) for t in xticklabels], fontsize=8, rotation=20 if len(x) > 5 else 0)
    ax.set_xlabel(_plain(xlabel))
    ax.set_ylabel("class accuracy (%)")
    ax.set_title("Most hurt and most helped classes against regularization strength", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def tradeoff(labels, mean, worst, ref: int, best: int, path: Path) -> Path:
    """Mean against worst-class accuracy, one point per setting."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    mean, worst = 100 * np.asarray(mean), 100 * np.asarray(worst)
    ax.scatter(mean, worst, color="#34495e", zorder=3)
    for i, label in enumerate(labels):
        tag = " (reference)" if i == ref else " (best mean)" if i == best else ""
        ax.annotate(_plain(label + tag), (mean[i], worst[i]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.scatter([mean[ref]], [worst[ref]], s=120, facecolors="none", edgecolors="black", label="reference")
    ax.scatter([mean[best]], [worst[best]], s=120, marker="*", color="#f39c12", zorder=4, label="best mean")
    ax.margins(x=0.2, y=0.12)
    ax.set_xlabel("mean class accuracy (%)")
    ax.set_ylabel("worst class accuracy (%)")
    ax.set_title("Mean against worst class, per setting (means over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def histograms(labels, acc, path: Path) -> Path:
    """Distribution of per-class accuracy (mean over seeds) for each setting; acc: settings x classes."""
    n = len(labels)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(3.2 * cols, 2.2 * rows + 0.6))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    bins = np.linspace(0, 100, 21)
    for ax, label, a in zip(axes, labels, 100 * np.asarray(acc, dtype=float)):
        ax.hist(a[~np.isnan(a)], bins=bins, color="#2980b9")
        ax.axvline(np.nanmean(a), color="black", lw=1, ls="--")
        ax.set_title(_plain(label), fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[len(labels) :]:
        ax.set_visible(False)
    fig.supxlabel("class accuracy (%)", fontsize=8)
    fig.supylabel("classes", fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.9, hspace=0.45, wspace=0.1)
    return _save(fig, path, tight=False)  # fixed layout: tight_layout over many panels is slow


def repair_bars(names, best_delta, best_sig, repaired_delta, repaired_sig, repaired, labels, path: Path) -> Path:
    """The bar plot for three settings: per class, the change from the reference to the best-mean setting and
    to the repaired one, side by side, sorted by the first; significant changes in full colour, repaired classes
    starred."""
    order = np.argsort(best_delta)
    b, r = 100 * np.asarray(best_delta)[order], 100 * np.asarray(repaired_delta)[order]
    bs, rs = np.asarray(best_sig)[order], np.asarray(repaired_sig)[order]
    x = np.arange(len(b))
    fig = Figure(figsize=(max(6.5, min(16.0, 0.4 * len(b))), 4.3))
    ax = fig.add_subplot()
    ax.bar(x - 0.21, b, width=0.4, color=["#e67e22" if s else "#f5cba7" for s in bs], label=_plain(labels[1]))
    ax.bar(x + 0.21, r, width=0.4, color=["#2e86c1" if s else "#aed6f1" for s in rs], label=_plain(labels[2]))
    ax.axhline(0, color="black", lw=0.5)
    ticks = [_plain(names[i]) + (" *" if i in repaired else "") for i in order]
    if len(b) <= 40:
        ax.set_xticks(x, ticks, rotation=60, ha="right", fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(b)} classes, sorted by the change to {_plain(labels[1])}")
    ax.set_ylabel("change from the reference (points)")
    ax.set_title(_plain(f"Change from the reference {labels[0]} (* repaired classes)"), fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)
