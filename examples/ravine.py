"""The ravine: SGD, SGD with momentum and Adam on f(x, y) = (x^2 + 50 y^2) / 2.

    python examples/ravine.py [out.png] [--steps 60]

The curvature is 1 along x and 50 along y (condition number 50). Plain SGD must keep
lr < 2/50 or it diverges across the steep y direction, so it crawls along the shallow x
direction. Momentum cancels the back-and-forth in y and accumulates speed in x. Adam divides each
coordinate by its own gradient RMS, so both coordinates move at about lr per step whatever
the curvature. Each path is fastnn.optim's fused update on a 2-element parameter array.
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fastnn import optim

CURVATURE = np.array([1.0, 50.0])
START = np.array([-9.0, 1.5])


def f(p):
    return 0.5 * np.sum(CURVATURE * p * p, axis=-1)


def path(opt, steps):
    params = START.copy()
    points = [params.copy()]
    for _ in range(steps):
        opt.update(params, CURVATURE * params)  # the gradient of f
        points.append(params.copy())
    return np.array(points)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="ravine.png", help="PNG to write")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()

    runs = {
        "SGD, lr=0.035": optim.SGD(lr=0.035),
        "SGD + momentum, lr=0.01, momentum=0.85": optim.SGD(lr=0.01, momentum=0.85),
        "Adam, lr=0.5": optim.Adam(lr=0.5),
    }
    xs, ys = np.meshgrid(np.linspace(-10, 3, 400), np.linspace(-2.2, 2.2, 300))
    grid = np.stack([xs, ys], axis=-1)
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.contour(xs, ys, f(grid), levels=np.geomspace(0.05, 150, 16), cmap="Greys",
               linewidths=0.8)
    for (label, opt), color in zip(runs.items(), ("tab:red", "tab:blue", "tab:green")):
        points = path(opt, args.steps)
        print(f"{label:40s} f after {args.steps} steps: {f(points[-1]):.3e}")
        ax.plot(points[:, 0], points[:, 1], "o-", ms=2.5, lw=1.2, color=color,
                label=f"{label}: f = {f(points[-1]):.1e}")
    ax.plot(*START, "k*", ms=12)
    ax.plot(0, 0, "k+", ms=12)
    ax.set_xlabel("x (curvature 1)")
    ax.set_ylabel("y (curvature 50)")
    ax.set_title(f"f(x, y) = (x² + 50 y²) / 2, {args.steps} steps from "
                 f"({START[0]:g}, {START[1]:g})")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
