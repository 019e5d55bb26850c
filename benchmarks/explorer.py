"""How fast does the attention explorer answer a slider move, and how long do a cine's maps take?

    .venv/bin/python benchmarks/explorer.py                 # 256^2 and 512^2 cines, the shipped teach detector
    .venv/bin/python benchmarks/explorer.py --sizes 512 --frames 96

For each size it simulates one XCA-Synth cine (30 fps, 96 frames by default), builds an ``AttentionExplorer``
on it (the first computation of its maps: features, the detector's forward with attention capture, the
first picture), then moves the frame slider over every frame for every module, and times each update
(setting ``frame.value`` until the new PNG and readout are in the widget's traits). It prints the
median, 95th percentile and maximum. The browser adds its own transfer and decode on top; this is the
Python side. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def measure(size: int, n_frames: int, fps: float, device: str = "cpu") -> dict[str, float]:
    from xcalab.data.synth.simulator import simulate_sequence
    from xcalab.locator import load_locator
    from xcalab.pipeline import shipped_detector_path
    from xcalab.viz.explorer import AttentionExplorer

    locator = load_locator(shipped_detector_path("STA-IPCon"), device=device)
    seq = simulate_sequence((11, 0), image_size=size, fps=fps, n_frames=n_frames, video_id=f"bench-{size}")
    start = time.perf_counter()
    explorer = AttentionExplorer(seq, {"STA": locator})
    first = time.perf_counter() - start
    updates = []
    for module in explorer.module.options:
        explorer.module.value = module
        for k in range(seq.n_frames):
            if k == explorer.frame.value:  # not a move: nothing would be redrawn
                continue
            t0 = time.perf_counter()
            explorer.frame.value = k
            updates.append(time.perf_counter() - t0)
    ms = np.asarray(updates) * 1000
    return {"size": size, "first_maps_s": first, "updates": len(ms), "median_ms": float(np.median(ms)),
            "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--fps", type=float, default=30.0)
    args = p.parse_args(argv)
    for size in args.sizes:
        r = measure(size, args.frames, args.fps)
        print(f"{r['size']}^2: first maps {r['first_maps_s']:.2f} s; {r['updates']} slider updates: median "
              f"{r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, max {r['max_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
