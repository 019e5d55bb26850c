"""XCA-Synth: a physically grounded, seeded simulator of X-ray coronary angiography cines with exact truth.

Every number has its provenance beside it: a source tag [S1], [S3], ... (the publications listed, with what
xcalab takes from each, in ``docs/xca-synth-sources.md``), "measured" (on real clinical XA exports),
"derived" (computed from sourced numbers or X-ray physics tables) or "assumption".
The stages, one module each, in the order a cine is made:

    params.py     Knobs (difficulty), SimParams (every number of one cine), sample_params(seed, ...)
    anatomy.py    coronary trees on an ellipsoidal epicardium, the catheter, the C-arm camera
    dynamics.py   injection, dispersed front, washout, blush; keyframes from the iodine curve
    motion.py     heartbeat, breathing, table pan
    imaging.py    log-domain X-ray formation, detector noise, clinical post-processing
    simulator.py  simulate_sequence / render: the stages put together
    scenarios.py  archive-like cines: natural time scale, 3.5-7 s, truncated or without contrast, with status
    realism.py    proxy statistics of realism (grey levels, vessels, noise, durations) on any cine; the realism table
    benchmark.py  build a preset's benchmark to disk (parallel, resumable) and load it back

    >>> seq = simulate_sequence(0, image_size=64, n_frames=32)
    >>> seq.frames.shape, seq.truth.keyframes
    ((32, 64, 64), (..., ..., ...))
"""

from xcalab.config import SCENARIOS
from xcalab.data.synth.benchmark import SynthBenchmark, build_benchmark, load_benchmark, read_sequence_npz
from xcalab.data.synth.dynamics import PHASES, KeyframeRule, keyframes_from_curve, phases_from_curve
from xcalab.data.synth.params import Knobs, SimParams, sample_params
from xcalab.data.synth.realism import TARGETS, format_realism_table, realism_statistics, realism_table
from xcalab.data.synth.scenarios import STATUS, simulate_scenario
from xcalab.data.synth.simulator import render, simulate_sequence

__all__ = [
    "PHASES",
    "SCENARIOS",
    "STATUS",
    "TARGETS",
    "KeyframeRule",
    "Knobs",
    "SimParams",
    "SynthBenchmark",
    "build_benchmark",
    "format_realism_table",
    "keyframes_from_curve",
    "load_benchmark",
    "phases_from_curve",
    "read_sequence_npz",
    "realism_statistics",
    "realism_table",
    "render",
    "sample_params",
    "simulate_scenario",
    "simulate_sequence",
]
