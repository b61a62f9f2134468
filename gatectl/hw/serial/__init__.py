"""Relay boards on a serial port: one port thread (`port`), a `Dialect` per board family
(`modbus`, `lcus`, listed in `registry`), and a pty board simulator (`sim`)."""
