"""Archive-like XCA-Synth cines: natural time scale, clinical lengths, truncated passages, runs without contrast.

Clinical archives hold cines of 3.5-7 s at 7.5, 15 or 30 fps whose contrast passage is *not* squeezed into the
frame budget, and many are cut: the recording stops before the washout ends, starts after the contrast has
entered, or shows no contrast at all. ``simulate_scenario`` makes such a cine, with its true status, as a window
of N frames (D = N / fps seconds) cut out of a longer *natural* run of the same seed (time_scale 1):

    scenario       status       in the cine        where the window [first, last] sits on the run's keyframes
    ok             ok           start, apex, end   first <= start - 0.3 s               end + 0.3 s <= last
    partial_end    partial      start, apex        first <= start - 0.3 s    apex + 0.5 s <= last <= end - 0.4 s
    partial_start  partial      apex, end          start + 0.2 s <= first <= apex - 0.3 s    end + 0.3 s <= last
    no_contrast    no_contrast  (none)             catheter, motion and noise; no iodine reaches the artery

Margins (``MARGINS_S``) are rounded up to whole frames, so that a keyframe in the cine never sits on its border
and a missing one lies clearly outside. On top of them the iodine curve is checked where the status is read:
at a partial_end cine's last frame the mass is above the end threshold (still opacified or washing out), at a
partial_start cine's first frame it is at or above the start threshold (contrast already in).

How a cine is made (``plan_scenario`` does steps 1-4 without drawing a frame; ``simulate_scenario`` renders):

    1. the run: the seed's injection (``sample_injection``) needs T seconds to pass; the run has
       M = ceil((T + D_max) fps) frames -- at least its natural length (nothing is squeezed) and long enough
       that any window opening before the apex fits -- drawn by ``sample_params(seed, n_frames=M, ...)``;
    2. its exact keyframes from the iodine curve (``contrast_passage``, no frames rendered);
    3. N uniform among the lengths in [ceil(D_min fps), floor(D_max fps)] that admit a placement, then the
       first frame uniform among that length's placements (stream: ``SeedSequence(seed)`` child 7);
    4. when no length admits one, the injection is redrawn (``contrast_draw`` 1, 2, ...; child 6) -- at most
       ``MAX_DRAWS`` times, then a ValueError says which scenario, durations and frame rate could not be met;
    5. ``render(params, window=(first, N))``: only the window's frames are drawn (a recording of just those
       frames: its exposure, display, noise and recursive filter start at ``first``).

Why redraw rather than shorter injections: "ok" needs the whole passage, which with the sourced 2-4 s
injections and 1-2.5 s washouts is often longer than 7 s. Redrawing keeps every sourced range as it is and
only conditions on what the archive can hold -- a complete cine of at most 7 s can only show a passage short
enough, exactly the selection a real archive makes -- so it is the simpler and more honest of the two options
(no second set of ranges to justify). It is cheap: a draw costs ~0.1 s without frames, and at (3.5, 7) s
about one "ok" seed in six and one partial_end seed in ten needs a redraw, partial_start none (40 seeds at
7.5 fps). The causes: a passage longer than ~6.3 s ("ok" only), or a start less than 0.3 s into the run --
the injection's logistic rise is centred on a pre-contrast time drawn from the sourced U(0.3, 2.5) s, so a
short one with a slow rise is above the start threshold at t = 0 already, and the run never begins earlier.

A no_contrast cine uses the seed's own draw with the lumen concentration set to 0 (the catheter still holds
agent; the injection's timing stays in the params but nothing reaches the artery), its window opening at the
run's first frame.

The truth of the cine (``Truth.keyframes`` stays three ints inside it, so existing code keeps working): a
missing start is stored as 0, a missing end as N - 1, no_contrast as (0, 0, 0); phases and vessel maps are
the run's, cut. meta says what is real:

    scenario, status         e.g. "partial_end", "partial"
    keyframes_present        [start?, apex?, end?] (bools)
    keyframes_true           the keyframes that are in the cine (ints; None for the missing ones)
    keyframes_outside        the exact position of a missing keyframe on the cine's frame axis (start < 0,
                             end >= N; None where it is in the cine or there is no contrast)
    scenario_draw, durations_s, window   which injection draw fitted; the duration range; where the cine sits
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xcalab.config import check_durations, check_scenario, frame_counts
from xcalab.data.io import Cine
from xcalab.data.synth.dynamics import KeyframeRule
from xcalab.data.synth.params import (
    SCENARIO_CHILD,
    Knobs,
    SimParams,
    sample_injection,
    sample_params,
    seed_tuple,
)
from xcalab.data.synth.simulator import contrast_passage, render

#: The status of a cine of each scenario (what a reader of the archive is told).
STATUS = {"ok": "ok", "partial_end": "partial", "partial_start": "partial", "no_contrast": "no_contrast"}
STATUSES = ("ok", "partial", "no_contrast")
#: Which of (start, apex, end) a cine of each scenario shows.
KEYFRAMES_PRESENT = {
    "ok": (True, True, True),
    "partial_end": (True, True, False),
    "partial_start": (False, True, True),
    "no_contrast": (False, False, False),
}
#: Margins of the window around the run's exact keyframes, seconds (see the table in the module docstring).
MARGINS_S = {
    "before_start": 0.3,  # ok, partial_end: first frame this long before the start
    "after_end": 0.3,  # ok, partial_start: last frame this long after the end
    "end_after_apex": 0.5,  # partial_end: last frame at least this long after the apex ...
    "end_before_end": 0.4,  # ... and at least this long before the end
    "start_after_start": 0.2,  # partial_start: first frame at least this long after the start ...
    "start_before_apex": 0.3,  # ... and at least this long before the apex
}
#: Injection draws tried before a scenario gives up (the seed's own + MAX_DRAWS - 1 redraws).
MAX_DRAWS = 32


@dataclass(frozen=True)
class ScenarioPlan:
    """Where a scenario cine sits on its natural run (everything but the frames).

    scenario      one of ``SCENARIOS``
    params        the natural run (time_scale 1; ``params.n_frames`` = its length M)
    first_frame   the cine is the run's frames [first_frame, first_frame + n_frames)
    n_frames      N, the cine's length (N / fps within ``durations_s``)
    draw          the injection draw that fitted (0: the seed's own; k: its k-th redraw)
    keyframes_run the run's exact (start, apex, end) frames (0, 0, 0 for no_contrast)
    durations_s   the (min, max) duration range the cine was drawn in
    """

    scenario: str
    params: SimParams
    first_frame: int
    n_frames: int
    draw: int
    keyframes_run: tuple[int, int, int]
    durations_s: tuple[float, float]

    @property
    def status(self) -> str:
        return STATUS[self.scenario]

    @property
    def keyframes_present(self) -> tuple[bool, bool, bool]:
        return KEYFRAMES_PRESENT[self.scenario]

    def keyframes_outside(self) -> list[int | None]:
        """The exact positions of the missing keyframes on the cine's frame axis (None where present, or
        where there is no contrast)."""
        if self.scenario == "no_contrast":
            return [None, None, None]
        return [None if present else int(k - self.first_frame)
                for k, present in zip(self.keyframes_run, self.keyframes_present)]


def _margin(name: str, fps: float) -> int:
    """A margin of ``MARGINS_S`` in whole frames (rounded up)."""
    return math.ceil(MARGINS_S[name] * fps - 1e-9)


def placements(scenario: str, keyframes: tuple[int, int, int], mass: np.ndarray, n_frames: int, fps: float,
               rule: KeyframeRule) -> np.ndarray:
    """The first frames at which a window of ``n_frames`` frames holds ``scenario`` on a run (int64 [K], sorted).

    keyframes  the run's exact (start, apex, end);  mass  its iodine-mass curve [M] (the status checks)
    """
    s, a, e = keyframes
    run = len(mass)
    first = np.arange(0, run - n_frames + 1)
    last = first + n_frames - 1
    peak = float(np.max(mass))
    if scenario == "ok":
        ok = (first <= s - _margin("before_start", fps)) & (last >= e + _margin("after_end", fps))
    elif scenario == "partial_end":
        ok = ((first <= s - _margin("before_start", fps)) & (last >= a + _margin("end_after_apex", fps))
              & (last <= e - _margin("end_before_end", fps)))
        ok &= mass[last] > rule.end_fraction * peak
    elif scenario == "partial_start":
        ok = ((first >= s + _margin("start_after_start", fps)) & (first <= a - _margin("start_before_apex", fps))
              & (last >= e + _margin("after_end", fps)))
        ok &= mass[first] >= rule.start_fraction * peak
    else:
        raise ValueError(f"scenario {scenario!r} has no passage to place")
    return first[ok]


def plan_scenario(
    seed: int | Sequence[int],
    scenario: str,
    fps: float = 15.0,
    image_size: int = 256,
    tree: str = "left",
    durations_s: tuple[float, float] = (3.5, 7.0),
    knobs: Knobs | None = None,
    rule: KeyframeRule | None = None,
) -> ScenarioPlan:
    """Steps 1-4 of the module docstring: the natural run and the cine's window on it (no frame rendered).

    Arguments as ``simulate_scenario``. Raises ValueError for a bad argument, or when ``MAX_DRAWS`` injection
    draws of the seed cannot hold ``scenario`` in ``durations_s`` at ``fps``.
    """
    check_scenario(scenario)
    if tree not in ("left", "right"):
        raise ValueError(f"tree must be 'left' or 'right', got {tree!r}")
    lengths = frame_counts(durations_s, fps)
    durations = check_durations(durations_s)
    seeds = seed_tuple(seed)
    knobs = knobs or Knobs()
    rule = rule or KeyframeRule()

    def run_params(draw: int) -> SimParams:
        natural = sample_injection(seeds, tree, knobs, draw).natural_duration()
        run_frames = max(math.ceil((natural + durations[1]) * fps), lengths[-1])
        return sample_params(seeds, image_size=image_size, fps=fps, tree=tree, n_frames=run_frames, knobs=knobs,
                             rule=rule, contrast_draw=draw)

    def window_rng(draw: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(list(seeds), spawn_key=(SCENARIO_CHILD, draw)))

    if scenario == "no_contrast":
        params = run_params(0)
        params = dataclasses.replace(params, contrast=dataclasses.replace(params.contrast, c_lumen_mg_ml=0.0))
        n = int(lengths[window_rng(0).integers(len(lengths))])
        return ScenarioPlan(scenario, params, 0, n, 0, (0, 0, 0), durations)

    shortest = math.inf  # the shortest passage seen (for the error message)
    for draw in range(MAX_DRAWS):
        params = run_params(draw)
        _, passage, _, (exact, censored, _, _) = contrast_passage(params)
        shortest = min(shortest, (exact[2] - exact[0]) / fps)
        if censored:  # the run never washed out: its end is unknown (not expected with M >= natural length)
            continue
        options = {n: placements(scenario, exact, passage.iodine_mass_mg, n, fps, rule) for n in lengths}
        fitting = [n for n in lengths if len(options[n])]
        if not fitting:
            continue
        rng = window_rng(draw)
        n = int(fitting[rng.integers(len(fitting))])
        first = int(options[n][rng.integers(len(options[n]))])
        return ScenarioPlan(scenario, params, first, n, draw, tuple(int(k) for k in exact), durations)
    raise ValueError(
        f"seed {seeds}: none of {MAX_DRAWS} injection draws fits scenario {scenario!r} into "
        f"{durations[0]}-{durations[1]} s at {fps} fps (the shortest passage start -> end took {shortest:.2f} s; "
        f"see MARGINS_S); allow longer durations_s"
    )


def simulate_scenario(
    seed: int | Sequence[int],
    scenario: str,
    fps: float = 15.0,
    image_size: int = 256,
    tree: str = "left",
    durations_s: tuple[float, float] = (3.5, 7.0),
    knobs: Knobs | None = None,
    rule: KeyframeRule | None = None,
    video_id: str | None = None,
) -> Cine:
    """One archive-like cine of ``scenario`` with its true status (see the module docstring).

    Args:
        seed: int or tuple of ints; the only source of randomness.
        scenario: "ok", "partial_end", "partial_start" or "no_contrast".
        fps: frame rate (7.5, 15, 30 clinically).
        image_size: frames are image_size^2 pixels.
        tree: "left" or "right" coronary injection.
        durations_s: (min, max) seconds of the cine; its N frames satisfy min <= N / fps <= max.
        knobs, rule: difficulty knobs and keyframe rule (defaults: the validated ones).
        video_id: name of the cine (default "xcasynth-<seed>-<scenario>").

    Returns:
        ``Cine`` as ``simulate_sequence`` returns it (frames float32 [N, H, W], truth with keyframes, vessel
        maps [N, H, W] and phases [N]), meta["params"] describing the natural run the cine was cut from, plus
        meta "scenario", "status", "keyframes_present", "keyframes_true", "keyframes_outside", "scenario_draw",
        "durations_s" and "window".
    """
    plan = plan_scenario(seed, scenario, fps, image_size, tree, durations_s, knobs, rule)
    vid = video_id or "xcasynth-" + "-".join(str(v) for v in plan.params.seed) + f"-{scenario}"
    seq = render(plan.params, video_id=vid, window=(plan.first_frame, plan.n_frames))
    present = plan.keyframes_present
    seq.meta.update({
        "scenario": scenario,
        "status": plan.status,
        "keyframes_present": list(present),
        "keyframes_true": [int(k) if p else None for k, p in zip(seq.truth.keyframes, present)],
        "keyframes_outside": plan.keyframes_outside(),
        "scenario_draw": plan.draw,
        "durations_s": list(plan.durations_s),
    })
    return seq
