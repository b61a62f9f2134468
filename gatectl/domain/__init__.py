"""Floor 1: pure records and rules (residents, events, owner keys, verdicts, access and plate rules); imports nothing of gatectl."""
