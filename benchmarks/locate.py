"""How long does ``xcalab locate`` take, start-up included, on this CPU?

    .venv/bin/python benchmarks/locate.py --make DIR        # write the inputs (synthetic DICOM XA cines)
    /usr/bin/time -v .venv/bin/xcalab locate DIR/one/cine-96f.dcm --out /tmp/o --no-progress
    /usr/bin/time -v .venv/bin/xcalab locate DIR/twenty --out /tmp/o --no-progress

``--make`` writes two inputs made by XCA-Synth and written as DICOM XA files, so nothing real is needed:

    DIR/one/cine-96f.dcm     one 96-frame 512 x 512 cine at 30 fps (the size of the real RCA fixture)
    DIR/twenty/*.dcm         twenty cines of 3.5-7 s at 7.5, 15 and 30 fps, 512 x 512, of every status

Time the two ``xcalab locate`` commands as whole processes (``/usr/bin/time -v``, or any tool that runs a
command several times and reports the median); the feature cache is not used by ``locate``, so every run
does all the work. Timings belong here, never in unit tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def make_inputs(root: Path, seed: int = 7) -> None:
    from xcalab.data.io import write_dicom
    from xcalab.data.synth.scenarios import SCENARIOS, simulate_scenario
    from xcalab.data.synth.simulator import simulate_sequence

    (root / "one").mkdir(parents=True, exist_ok=True)
    (root / "twenty").mkdir(parents=True, exist_ok=True)
    one = simulate_sequence((seed, 0), image_size=512, fps=30.0, n_frames=96, tree="right", video_id="cine-96f")
    write_dicom(one, root / "one" / "cine-96f.dcm")
    rates = (7.5, 15.0, 30.0)
    for i in range(20):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        seq = simulate_scenario((seed, 100 + i), scenario, fps=rates[i % 3], image_size=512,
                                tree=("left", "right")[i % 2], video_id=f"cine-{i:02d}")
        write_dicom(seq, root / "twenty" / f"cine-{i:02d}.dcm")
        print(f"cine-{i:02d}: {scenario}, {seq.n_frames} frames at {seq.fps:g} fps")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--make", required=True, help="folder to write the benchmark's DICOM inputs into")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    make_inputs(Path(args.make), args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
