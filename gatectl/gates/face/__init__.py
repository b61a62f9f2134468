"""The pedestrian face gate: tracks, votes, fusion, liveness per track, rules, then the door."""
