"""One finding of `doctor`: a check's name, its level (`ok`, `warn`: works, but worth a look; `fail`:
Reeve cannot do its job) and what to do about it. Shared by pulses/ops/doctor.py and the agent's checks
in pulses/ops/doctor_agent.py."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    level: str
    message: str

    @property
    def failed(self) -> bool:
        return self.level == FAIL
