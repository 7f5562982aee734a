"""``elastiq plot TIMELINE [--png PATH]``: waiting, in flight and workers over time."""

from __future__ import annotations

import argparse
from pathlib import Path

from autoscaler.timeline import read_timeline
from elastiq.decisions import DecisionRow


def render(rows: list[DecisionRow], png: Path, title: str = "elastiq scaling timeline") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queues = sorted({r.queue for r in rows})
    fig, axes = plt.subplots(len(queues), 1, figsize=(10, 3.6 * len(queues)), squeeze=False)
    t0 = min(r.t for r in rows)
    for ax, queue in zip(axes[:, 0], queues):
        qr = [r for r in rows if r.queue == queue]
        t = [r.t - t0 for r in qr]
        val = lambda k, qr=qr: [float("nan") if getattr(r, k) is None else getattr(r, k) for r in qr]
        ax.plot(t, val("waiting"), label="waiting", color="tab:blue")
        ax.plot(t, val("in_flight"), label="in flight", color="tab:orange")
        ax.set_ylabel("jobs")
        ax.set_xlabel("seconds")
        ax2 = ax.twinx()
        ax2.step(t, val("current"), where="post", label="workers", color="tab:green", linewidth=2)
        ax2.step(t, val("desired"), where="post", label="desired", color="tab:red", linestyle="--")
        ax2.set_ylabel("workers")
        ax2.set_ylim(bottom=0, top=max([r.desired or 0 for r in qr] + [r.current or 0 for r in qr]) + 1)
        ax2.yaxis.get_major_locator().set_params(integer=True)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right")
        ax.set_title(f"{title}: {queue}")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="elastiq plot", description=__doc__.splitlines()[0])
    p.add_argument("timeline", type=Path, help="JSON lines written by `elastiq autoscale --timeline`")
    p.add_argument("--png", type=Path, help="output (default: the timeline path with .png)")
    args = p.parse_args(argv)
    rows = [r for r in read_timeline(args.timeline) if r.decided]
    if not rows:
        print(f"elastiq plot: no decisions in {args.timeline}")
        return 1
    out = render(rows, args.png or args.timeline.with_suffix(".png"))
    print(out)
    return 0
