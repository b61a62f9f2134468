"""The thin command layer: `main.py` parses and dispatches, one module per group of commands,
`common.py` for what they share; the work is done by the floors below."""
