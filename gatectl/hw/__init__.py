"""Hardware drivers behind small interfaces; the serial drivers and the simulated board."""
