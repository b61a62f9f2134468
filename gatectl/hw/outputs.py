"""Named outputs over their boards: what doors, barriers and elevator holds drive.

Maps `[[outputs]]` names to a board and channel, and caps every activation at the output's
`max_on_s`, so no caller - however confused - can hold a relay on longer than configured.
"""

from __future__ import annotations

from gatectl.config.hardware import OutputConfig
from gatectl.core.metrics import RELAY_COMMANDS
from gatectl.hw.relay import Relay


class Outputs:
    def __init__(self, outputs: list[OutputConfig], boards: dict[str, Relay]):
        self._cfg = {o.name: o for o in outputs}
        self.boards = boards

    def _target(self, name: str) -> tuple[Relay, OutputConfig]:
        o = self._cfg[name]
        return self.boards[o.board], o

    def pulse(self, name: str, seconds: float) -> None:
        board, o = self._target(name)
        RELAY_COMMANDS.labels(o.board, "pulse").inc()
        board.pulse(o.channel, min(seconds, o.max_on_s))

    def set(self, name: str, on: bool) -> None:
        board, o = self._target(name)
        RELAY_COMMANDS.labels(o.board, "on" if on else "off").inc()
        board.set(o.channel, on)

    def board_of(self, name: str) -> str:
        """The board an output is wired to."""
        return self._cfg[name].board

    def is_on(self, name: str) -> bool:
        board, o = self._target(name)
        return board.is_on(o.channel)

    def all_off(self) -> None:
        for board in self.boards.values():
            board.all_off()
