"""Central sync over MQTT: outbox, enrollments, signed commands."""
