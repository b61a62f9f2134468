"""The vehicle lane: plates across frames with a per-character vote, vehicle rules, the barrier."""
