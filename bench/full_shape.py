"""Every kind of GPU recipe for 2 training steps and 1 validation batch at its real shapes, on this CPU.

Each run is the recipe through the `bortzoo` CLI in its own process, with random weights in the real
checkpoints' layouts (RoBERTa-large and BERT-large as safetensors in fp32, amazon/bort as an fp16 PyTorch
pickle, all in a Hugging Face cache so the recipe's Hub ids resolve unchanged) and the documented override
of `bortzoo.full_shape` (CPU, fp32, batch 2, offline data with texts longer than the recipe's max_length).
The table gives each run's wall time and peak resident memory, the same minus an idle `bortzoo` process
(Python, torch, Lightning and transformers imported), and `bortzoo plan`'s memory per device at the same
shapes beside it.

    python bench/full_shape.py                              # every kind (about 15 minutes on 2 cores)
    python bench/full_shape.py --kinds bort-rte pretrain    # a selection
    python bench/full_shape.py --cache ~/.cache/bortzoo/full-shape --out bench/results
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from bortzoo import full_shape
from bortzoo.serve.bench import hardware_info, slug, write_results

IDLE = "import bortzoo.cli, lightning, torch, transformers, datasets"


def idle_rss() -> int:
    """Peak resident bytes of a process that imports what every run imports, and does nothing."""
    idle = subprocess.Popen([sys.executable, "-c", f"{IDLE}; import time; time.sleep(1)"])  # the sleep: a last look
    status, peak = full_shape.wait_with_peak(idle, 300)
    if status != 0:
        raise SystemExit(f"the idle process failed: python -c {IDLE!r}")
    return peak


def format_table(rows: Sequence[dict]) -> str:
    header = ["kind", "status", "s", "peak GiB", "above idle", "plan GiB", "above idle / plan"]
    lines = [header] + [[r["kind"], r["status"], f"{r['seconds']:.0f}", f"{r['peak_rss_gib']:.2f}",
                         f"{r['above_idle_gib']:.2f}", f"{r['plan_gib']:.2f}",
                         f"{r['above_idle_over_plan']:.2f}" if r["above_idle_over_plan"] else "-"] for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines)


def main(argv: Optional[Sequence[str]] = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(full_shape.KINDS), choices=list(full_shape.KINDS),
                        help="the kinds to run")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/bortzoo/full-shape/hub"),
                        help="Hugging Face cache for the stand-in checkpoints (built once, about 3 GB)")
    parser.add_argument("--workdir", default=None, help="where the runs write, kept afterwards (default: a temporary "
                        "folder, each kind's outputs deleted once measured: BERT-large's checkpoints take 7.5 GB, "
                        "Agora's 14 GB)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    parser.add_argument("--out", default="bench/results", help="folder for the CSV and JSON, or 'none'")
    args = parser.parse_args(argv)

    print(f"stand-in checkpoints in {args.cache} (built on the first run)", flush=True)
    full_shape.stand_in_hub_cache(args.cache)
    idle = idle_rss()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        for name in args.kinds:
            print(f"{name}: {full_shape.KINDS[name].what} ...", flush=True)
            result = full_shape.run(name, workdir / name, args.cache, timeout=args.timeout).row()
            above = max(0, result["peak_rss_gib"] - idle / 2**30)
            result.update(above_idle_gib=round(above, 2),
                          above_idle_over_plan=round(above / result["plan_gib"], 2) if result["plan_gib"] else None)
            rows.append(result)
            if not args.workdir:  # checkpoints with AdamW state: gigabytes per kind, not kept unless asked for
                shutil.rmtree(workdir / name, ignore_errors=True)
            print(f"  {result['status']} in {result['seconds']:.0f} s, peak {result['peak_rss_gib']:.2f} GiB "
                  f"(plan {result['plan_gib']:.2f} GiB){'  ' + result['error'] if result['error'] else ''}", flush=True)
    info = hardware_info()
    print(f"\n{info['cpu_flags']}, {info['cores']} cores, torch {info['torch']}, "
          f"transformers {info['transformers']}; idle bortzoo process {idle / 2**30:.2f} GiB\n")
    print(format_table(rows))
    if args.out != "none":
        meta = {**info, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "idle_rss_gib":
                round(idle / 2**30, 2), "override": {name: full_shape.KINDS[name].overrides for name in args.kinds}}
        stem = f"full-shape-{slug(info['cpu']) or 'unknown-cpu'}-torch{slug(info['torch'], keep='.')}"
        for path in write_results(rows, meta, args.out, stem=stem):
            print(f"wrote {path}")
    if any(r["status"] != "ok" for r in rows):
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()
