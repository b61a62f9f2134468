"""Behaviour analysis: what no single gate decision shows.

Analysers are plug-ins fed what the gates observe and the event history. The pattern rules
(`strangers`, `night`, `absence`, `vehicles`) are pure functions of a `History` and a clock,
listed once in `registry.RULES`; `engine` loads the history from the store, runs them on the
runner's schedule (or once, for `gatectl analyse`) and records their alerts. `tailgate` counts
people crossing a door line per grant on the door camera; `sensors` turns named sensor inputs
into debounced alerts. The I/O (store, recorder, detector, clip files) stays at these edges.
"""
