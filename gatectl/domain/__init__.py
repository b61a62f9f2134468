"""Pure records and rules: residents, events, owner keys, verdicts, access, the face match rule,
the plate grammar and vehicle rules. Imports nothing of gatectl."""
