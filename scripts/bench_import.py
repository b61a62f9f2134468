#!/usr/bin/env python3
"""Bulk enrollment rate: `gatectl residents import` (gatectl.cli.bulk.run_import, the real
enrollment path with the real models) on the test set's faces, into a store that already holds
``--gallery`` residents (synthetic templates: every enrollment checks duplicates against the
whole gallery and reloads the directory, so the rate depends on how many are enrolled).

Prints progress to stderr and, last, one JSON line on stdout: per gallery size, the seconds per
resident (p50/p95/max, first one included: the models load lazily), residents per minute, and
the RSS after.

    python scripts/bench_import.py [--gallery 0 1000 5000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import stats  # noqa: E402

from gatectl.cli.bulk import run_import  # noqa: E402
from gatectl.config import default_config  # noqa: E402
from gatectl.runtime.app import App, simulated_boards  # noqa: E402

FACES = Path(__file__).resolve().parent.parent / "tests" / "data" / "faces"


def photo_folder(root: Path) -> int:
    """One sub-folder per identity of the test set (its single-face photos but the last)."""
    by_person: dict[str, list[Path]] = {}
    for p in sorted(FACES.iterdir()):
        if p.suffix.lower() in {".jpg", ".jpeg", ".png"} and not p.name.startswith("multi_"):
            by_person.setdefault(p.stem.rsplit("_", 1)[0], []).append(p)
    for i, (person, photos) in enumerate(sorted(by_person.items())):
        d = root / f"9-9-{100 + i}__{person}"
        d.mkdir(parents=True)
        for p in photos[:2]:
            shutil.copy(p, d / p.name)
    return len(by_person)


def seed(app: App, n: int) -> None:
    """``n`` residents with random unit templates of the embedder's size, in one transaction."""
    rng = np.random.default_rng(0)
    model, dim = app.embedder.model_id, app.embedder.dim
    with app.store.write():
        for i in range(n):
            v = rng.standard_normal(dim).astype(np.float32)
            app.store.add_resident(f"synthetic {i}", f"8-8-{i}", [(v / np.linalg.norm(v), 1.0)],
                                   model)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gallery", type=int, nargs="+", default=[0, 1000, 5000])
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        photos = Path(tmp) / "photos"
        people = photo_folder(photos)
        for n in args.gallery:
            cfg = default_config()
            app = App(cfg, Path(tmp) / f"state-{n}", boards=simulated_boards(cfg))
            try:
                t0 = time.perf_counter()
                seed(app, n)
                print(f"gallery {n}: seeded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
                out = run_import(app, photos, Path(tmp) / f"refusals-{n}.csv", progress=False)
            finally:
                app.close()
            per = [d * 1000 for d in out.durations]
            results.append({
                "gallery": n,
                "residents": people,
                "enrolled": out.enrolled,
                "refused": out.refused,
                "ms_per_resident": stats(per),
                "residents_per_min": round(60 / (out.seconds / len(per)), 1) if per else None,
                "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            })
            print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"bench": "import", "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
