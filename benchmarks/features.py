"""Benchmark: how fast the feature extractors turn a cine into (T, 4096) features, and how much memory it takes.

    .venv/bin/python benchmarks/features.py [--threads 2] [--sizes 256 512] [--frames 64] [--batch-size 8]

For every frame size and source, a fresh process reads nothing from disk: it makes a random cine of
``--frames`` frames, extracts features once to warm up, then times a second extraction at the frames' own
size (no resizing: the number is the network's, or Frangi's, at that size) with stride 4. It prints

    frames/s   cine frames turned into features per second (stride 4: one window per 4 frames)
    windows/s  windows (feature steps) per second
    peak MB    the process's peak resident memory (torch, the cine and the model included)

With ``--quality`` it measures instead what the extractors are worth (this takes a few minutes):

    synthetic   Dice and pixel AUC of learned and Frangi vessel maps against XCA-Synth's true maps, on every
                window (stride 4) of teach-like test cines (256 x 256, 40-160 frames, 7.5/15/30 fps, both
                trees; simulator seeds disjoint from training). Frangi has no natural threshold: its Dice uses
                the threshold that is best on the validation cines (the learned map is also shown at its own
                best validation threshold, next to 0.5).
    real        the per-window vessel-area curve (mean of the 4096 features) of the real RCA cine in
                ../shared/data/real (learned, Frangi, raw), its plateau / pre-contrast ratio and the frame at
                which it first crosses half-way from the pre-contrast level to the plateau.

Timings belong here, never in a unit test.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time


def _measure(size: int, source: str, frames: int, threads: int, batch_size: int, weights: str | None, queue) -> None:
    import numpy as np
    import torch

    from xcalab.data.io import Cine
    from xcalab.features.extract import extract_features
    from xcalab.features.weights import load_extractor

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    seq = Cine(rng.random((frames, size, size), dtype=np.float32), 15.0, video_id=f"bench{size}")
    extractor = load_extractor(weights) if source == "learned" else None
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extract_features(seq, source, stride=4, extractor=extractor, batch_size=batch_size, device="cpu", work_size=None)
    start = time.perf_counter()
    feats = extract_features(seq, source, stride=4, extractor=extractor, batch_size=batch_size, device="cpu",
                             work_size=None)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"size": size, "source": source, "seconds": seconds, "windows": feats.shape[0], "frames": frames,
               "peak_mb": peak, "before_mb": base})


def _pooled(maps: list, truths: list):
    import numpy as np

    return np.concatenate([m.numpy().ravel() for m in maps]), np.concatenate([t.ravel() for t in truths])


def quality(n_test: int, n_val: int, weights: str | None, threads: int, build: str | None = None) -> None:
    """Print the synthetic and real-cine measurements described in the module docstring."""
    import torch

    from xcalab.features.extract import window_centres, window_maps
    from xcalab.features.train import ExtractorTrainConfig
    from xcalab.features.weights import load_extractor

    torch.set_num_threads(threads)
    extractor = load_extractor(weights)
    cfg = ExtractorTrainConfig.from_dict(extractor.meta.get("training", {}))
    print(f"extractor {extractor.path} (version {extractor.version}), teach-like cines at {cfg.image_size} px")

    def maps_and_truth(cines):
        out = {"learned": [], "frangi": [], "truth": []}
        for seq in cines:
            centres = window_centres(seq.n_frames, 4)
            out["truth"].append(seq.truth.vessel_maps[centres])
            for source in ("learned", "frangi"):
                out[source].append(window_maps(seq, source, 4, extractor, device="cpu"))
        return out

    if build:
        from xcalab.data.synth import load_benchmark

        bench = load_benchmark(build)
        val_ids, test_ids = bench.video_ids("validation")[:n_val], bench.video_ids("test")
        synthetic(extractor, cfg, maps_and_truth, len(test_ids), len(val_ids),
                  val_cines=[bench.load(v) for v in val_ids], test_cines=(bench.load(v) for v in test_ids),
                  where=f"{build}: validation {len(val_ids)} (threshold), test split {len(test_ids)} cines")
    elif n_test > 0:
        synthetic(extractor, cfg, maps_and_truth, n_test, n_val)
    real(extractor)


def synthetic(extractor, cfg, maps_and_truth, n_test: int, n_val: int, val_cines=None, test_cines=None,
              where: str = "") -> None:
    """Dice and AUC of learned and Frangi maps on teach-like test cines (or the given validation/test cines)."""
    from xcalab.features.train import best_threshold, segmentation_scores, synth_sequences

    val = maps_and_truth(synth_sequences("validation", cfg, n=n_val) if val_cines is None else val_cines)
    test_cines = synth_sequences("test", cfg, n=n_test) if test_cines is None else test_cines
    test = maps_and_truth(test_cines)
    n_windows = sum(len(t) for t in test["truth"])
    print(f"\nsynthetic test: {where or f'{n_test} simulated cines'}, {n_windows} windows (stride 4), "
          "truth = true map >= 0.5")
    print(f"{'source':<8} {'threshold':>10} {'Dice':>6} {'soft Dice':>10} {'AUC':>6}")
    for source in ("learned", "frangi"):
        val_p, val_t = _pooled(val[source], val["truth"])
        tuned, _ = best_threshold(val_p, val_t)
        test_p, test_t = _pooled(test[source], test["truth"])
        thresholds = ((0.5, "0.5"), (tuned, f"{tuned:.3g} (val)")) if source == "learned" else ((tuned, f"{tuned:.3g} (val)"),)
        for threshold, label in thresholds:
            s = segmentation_scores(test_p, test_t, threshold)
            print(f"{source:<8} {label:>10} {s['dice']:>6.3f} {s['soft_dice']:>10.3f} {s['auc']:>6.3f}")


def real(extractor) -> None:
    """Vessel-area curves of the real RCA cine."""
    import numpy as np

    from xcalab.data.io import read_dicom
    from xcalab.data.samples import real_cine_path
    from xcalab.features.extract import window_centres, window_maps


    path = real_cine_path("xa_rca_cine_96f_30fps")
    if path is None:
        print("\nreal cine: ../shared/data/real is absent, skipped")
        return
    seq = read_dicom(path)
    centres = window_centres(seq.n_frames, 4)
    print(f"\nreal cine {path.name}: {seq.n_frames} frames, {len(centres)} windows (stride 4), centre frames "
          f"{centres[0]}..{centres[-1]}; no contrast before ~18, fills ~18-40, stays to 95")
    pre, plateau = centres <= 14, centres >= 46
    for source in ("learned", "frangi", "raw"):
        area = window_maps(seq, source, 4, extractor, device="cpu").mean(dim=(1, 2)).numpy().astype(float)
        lo, hi = area[pre].mean(), area[plateau].mean()
        half = (lo + hi) / 2
        last_pre = int(np.nonzero(pre)[0][-1])  # search after the pre-contrast windows (the first may be an outlier)
        above = [k for k in range(last_pre + 1, len(area)) if area[k] >= half] if hi > lo else []
        cross = float("nan")
        if above:
            k = above[0]
            cross = centres[k - 1] + (half - area[k - 1]) / (area[k] - area[k - 1]) * (centres[k] - centres[k - 1])
        print(f"{source:<8} plateau/pre {hi / lo:6.2f}   half-way at frame {cross:5.1f}   curve "
              + " ".join(f"{v:.4f}" for v in area))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--sources", nargs="+", default=["learned", "frangi", "raw"])
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--weights", default=None, help="extractor weights (default: the shipped ones)")
    p.add_argument("--quality", action="store_true", help="measure Dice/AUC and the real-cine curves instead")
    p.add_argument("--n-test", type=int, default=12, help="--quality: synthetic test cines (0: only the real cine)")
    p.add_argument("--n-val", type=int, default=6)
    p.add_argument("--build", default=None, help="--quality: score the test split of an XCA-Synth build "
                   "(e.g. data/cache/xca-synth-teach-seed0; validation cines of the build tune Frangi's threshold)")
    args = p.parse_args(argv)
    if args.quality:
        quality(args.n_test, args.n_val, args.weights, args.threads, args.build)
        return 0
    ctx = mp.get_context("spawn")  # a fresh process per row: its peak memory is its own
    print(f"features benchmark: {args.frames} frames, stride 4, batch {args.batch_size}, {args.threads} CPU threads")
    print(f"{'source':<8} {'size':>5} {'frames/s':>9} {'windows/s':>10} {'peak MB':>8}")
    for size in args.sizes:
        for source in args.sources:
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(size, source, args.frames, args.threads, args.batch_size,
                                                      args.weights, queue))
            proc.start()
            row = queue.get()
            proc.join()
            print(f"{source:<8} {size:>5} {row['frames'] / row['seconds']:>9.1f} "
                  f"{row['windows'] / row['seconds']:>10.2f} {row['peak_mb']:>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
