#!/usr/bin/env python3
"""Plate lane latency on a 1280x720 lane frame, with the production code.

- ``detect_ms``: the 320 plate detector on the whole frame;
- ``analyze_ms``: detection + corner refinement + rectification + reading (two reads, grammar
  beam search) + colour, i.e. `PlateAnalyzer.analyze`, what a lane runs per frame;
- ``lane_ms``: `PlateLane.process` (analyze + tracking + vote) on frames of a passing car, the
  decision and its event included.

Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_plates.py [--iterations 200] [--image tests/data/plates/scenes/hyperlpr_test_img.jpg]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import stats, timed  # noqa: E402
from gatectl.runtime.app import App, simulated_boards  # noqa: E402
from gatectl.config import parse_config  # noqa: E402
from gatectl.sources.media import read_image  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--image", type=Path, default=REPO / "tests/data/plates/scenes/hyperlpr_test_img.jpg")
    args = ap.parse_args()
    frame = read_image(args.image)
    h, w = frame.shape[:2]
    cfg = parse_config({"cameras": [{"name": "lane", "source": "0"}], "outputs": [{"name": "arm"}],
                        "barriers": [{"name": "arm", "open_output": "arm"}],
                        "gates": [{"kind": "plate", "name": "lane", "camera": "lane", "barrier": "arm"}]})
    with tempfile.TemporaryDirectory() as tmp:
        app = App(cfg, Path(tmp), boards=simulated_boards(cfg))
        lane = app.gate(cfg.gates[0])
        an = lane.analyzer
        read = [o.text for o in an.analyze(frame)]
        print(f"{args.image.name} {w}x{h}: plates {read}; {args.iterations} iterations ...", file=sys.stderr)
        for fn in (lambda: an.detector.detect(frame), lambda: an.analyze(frame)):
            timed(fn, 10)
        detect = timed(lambda: an.detector.detect(frame), args.iterations)
        analyze = timed(lambda: an.analyze(frame), args.iterations)
        t = [0.0]

        def step() -> None:
            t[0] += 0.1
            lane.process(frame, t[0])

        lane_ms = timed(step, args.iterations)
        decisions = len(app.store.events())
        app.close()
    result = {"frame": f"{w}x{h}", "image": args.image.name, "plates": read, "iterations": args.iterations,
              "detect_ms": stats(detect), "analyze_ms": stats(analyze), "lane_ms": stats(lane_ms),
              "decisions": decisions, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
