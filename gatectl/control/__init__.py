"""Pure state machines for the things gatectl drives: doors, barriers, elevator holds.

They are fed events and a clock and return `actions`; they never touch a port, a file or the
time of day, so every scenario is tested with a fake clock and no sleeps. `control.controls`
applies their actions to the relay outputs and the event log.
"""
