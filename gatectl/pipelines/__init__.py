"""Frame -> decision, one module per gate kind. The same objects serve run, replay and tests."""
