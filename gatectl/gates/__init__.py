"""Gate kinds: each turns frames into decisions through perception, tracking, rules and the controls."""
