"""OSDP (IEC 60839-11-5) card and PIN readers on RS-485, through libosdp: `panel` (the control
panel thread of one bus), `channel` (the byte pipes libosdp polls), `sim` (a reader on a pty)."""
