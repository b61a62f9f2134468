"""Assembly and the running service: the App, the runner, systemd, the clock watch, the reference centre, the demo."""
