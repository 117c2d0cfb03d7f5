"""One PNG of the packages' epoch curves overlaid: validation AUC and validation log-loss
per epoch, one line per package, the packaged (best) epoch marked, so a curve that
was still rising or already overfitting shows beside the others."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trainer.comparison.read import PackageRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PANELS = (("validation_auc", "validation AUC"), ("validation_logloss", "validation log-loss"))


def default_plot_path(records: list[PackageRecord], folder: str) -> Path:
    """`<folder>/compare-<short id>-<short id>....png`: the same packages give the same file."""
    return Path(folder) / f"compare-{'-'.join(r.short_id for r in records)}.png"


def plot_curves(records: list[PackageRecord], path: Path) -> Path:
    """Write the overlaid curves to `path` (its folder made if missing); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.5 * len(PANELS), 3.8))
    for axis, (column, title) in zip(axes, PANELS):
        for record in records:
            _plot_one(axis, record, column)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle("fab compare (o: the packaged epoch)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_one(axis: Axes, record: PackageRecord, column: str) -> None:
    table = record.epochs
    if column not in table or "epoch" not in table:
        return
    (line,) = axis.plot(table["epoch"], table[column], "-", label=f"{record.letter} {record.run_id}")
    best = table[table["epoch"] == record.manifest["best_epoch"]]
    axis.plot(best["epoch"], best[column], "o", color=line.get_color())
