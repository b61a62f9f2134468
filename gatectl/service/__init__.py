"""Running as a service: the gate loop, systemd notification, journald logging."""
