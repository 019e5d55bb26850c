"""The results table: the numbers of a metrics.json as the paper's tables print them, in Markdown and CSV.

One row per class (its AP at each tIoU and their mean) and a "mean" row (mAP at each tIoU, their mean, the
frame-level P/R/F and AD). AP, mAP and P/R/F are in percent as in the paper; AD is in frames. The input is the
dict ``xcalab.scoring.score_detections`` returns (and ``xcalab evaluate`` writes to metrics.json), so a table
can be rebuilt from a saved file at any time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from xcalab.scoring import CI_LEVEL


def _percent(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def results_table(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The results table as (column names, rows): one row per class (its AP at each tIoU and their mean) and
    a "mean" row (mAP at each tIoU, mAP, then frame P/R/F and AD). AP, mAP and P/R/F in percent, AD in
    frames; None where a number does not apply or could not be computed."""
    columns = ["", *(f"AP@{t:g}" for t in metrics["tiou"]), "mAP", "P", "R", "F", "AD", "AD ref."]
    rows: list[list[Any]] = []
    for name, aps in metrics["ap"].items():
        known = [a for a in aps if a is not None]
        mean = sum(known) / len(known) if known else None
        rows.append([name, *(_percent(a) for a in aps), _percent(mean), None, None, None, None, None])
    prf = (metrics.get("prf") or {}).get("paper") or {}
    rows.append([
        "mean", *(_percent(m) for m in metrics["map_per_tiou"]), _percent(metrics["mAP"]),
        _percent(prf.get("precision")), _percent(prf.get("recall")), _percent(prf.get("f1")),
        metrics.get("ad"), metrics.get("ad_paper"),
    ])
    return columns, rows


def results_table_markdown(metrics: Mapping[str, Any]) -> str:
    """The results table in Markdown: a header line naming the protocol and the tIoUs, the table (2 decimals,
    percent like the paper's tables) and a note on the frame-level numbers. Takes the dict of metrics.json."""
    columns, rows = results_table(metrics)
    tious = ", ".join(f"{t:g}" for t in metrics["tiou"])
    lines = [
        f"**Protocol `{metrics['protocol']}`** ({metrics['protocol_note']}); tIoU {tious}; "
        f"{metrics['n_videos']} videos, {metrics['n_missing']} with a class not detected.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join([":---", *["---:"] * (len(columns) - 1)]) + "|",
    ]
    for row in rows:
        cells = [row[0], *("–" if v is None else f"{v:.2f}" for v in row[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if metrics.get("ad") is None:
        lines.append(f"AP and mAP (mean over the tIoUs) in %. No keyframe metrics: {metrics.get('keyframe_note')}.")
        return "\n".join(lines) + "\n"
    fg = metrics["prf"]["foreground"]
    low, high = metrics["ci"]["ad"]
    ci = "–" if low is None else f"[{low:.2f}, {high:.2f}]"
    lines.append(
        f"AP, mAP (mean over the tIoUs), P, R, F in %; AD in frames, over the {metrics['n_keyframes']} videos with "
        f"keyframes. P/R/F: frame level, macro average with background (the paper's convention); foreground only: "
        f"P {100 * fg['precision']:.2f}, R {100 * fg['recall']:.2f}, F {100 * fg['f1']:.2f}. AD: nearest frames "
        f"vs true keyframes, {100 * CI_LEVEL:g} % CI {ci}; AD ref.: the reference's convention (truncated frames vs "
        f"int(true - {metrics['window']}/2)), for comparison with the paper only."
    )
    return "\n".join(lines) + "\n"


def results_table_csv(metrics: Mapping[str, Any]) -> str:
    """The results table as CSV text: a protocol column first, then the Markdown table's columns with their
    units; numbers to 4 decimals, empty where none applies."""
    columns, rows = results_table(metrics)
    units = ["row", *(f"{c} (%)" for c in columns[1:-2]), "AD (frames)", "AD ref. (frames)"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["protocol", *units])
    for row in rows:
        writer.writerow([metrics["protocol"], row[0], *("" if v is None else f"{v:.4f}" for v in row[1:])])
    return out.getvalue()
