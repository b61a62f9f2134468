"""Assembly and the running service: the App, the runner, health, replay, the doctor, systemd,
the clock watch, the reference centre, the demo."""
