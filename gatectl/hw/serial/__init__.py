"""Relay boards on a serial port: one port thread (`port`), a `Dialect` per board family
(`modbus`, `lcus`: the module is the driver's name, see `dialect`), and a pty board simulator
(`sim`)."""
