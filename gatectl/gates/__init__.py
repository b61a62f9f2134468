"""Gate kinds as plug-ins: each package turns frames into decisions through perception, tracking,
rules and the controls (`base` says what a kind is, `registry` finds it)."""
