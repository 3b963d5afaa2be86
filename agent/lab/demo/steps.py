"""The demo's time line: what happened when, and which step failed and why.

Every event carries the real seconds since the demo started and the simulated wall time
of the agents' (accelerated) clock. A step wraps a part of the story; whatever goes wrong
inside it becomes one :class:`DemoFailure` naming the step and the reason.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.errors import AgentError

INFO = "info"
STEP = "step"
OK = "ok"
FAIL = "fail"


class DemoFailure(AgentError):
    """A step of the demo failed (the message names the step and the reason)."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"demo step '{step}' failed: {reason}")
        self.step = step
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the time line."""

    real_seconds: float
    """Real seconds since the demo started."""
    agent_time: float | None
    """Wall time of the simulated clock (None before the clock runs)."""
    text: str
    kind: str = INFO
    """``info``, ``step`` (a step begins), ``ok`` (a check held) or ``fail``."""

    def to_json(self) -> dict[str, object]:
        return {
            "real_seconds": round(self.real_seconds, 3),
            "agent_time": None if self.agent_time is None else round(self.agent_time, 3),
            "kind": self.kind,
            "text": self.text,
        }


def clock_text(agent_time: float | None) -> str:
    """``HH:MM:SS`` of the simulated clock in UTC, or dashes before it runs."""
    if agent_time is None:
        return "--:--:--"
    return datetime.fromtimestamp(agent_time, UTC).strftime("%H:%M:%S")


def event_line(event: Event) -> str:
    """``[  12.3 s] 10:24:05  text``: real seconds, simulated UTC time, what happened."""
    mark = {OK: "ok: ", FAIL: "FAILED: "}.get(event.kind, "")
    return f"[{event.real_seconds:6.1f} s] {clock_text(event.agent_time)}  {mark}{event.text}"


def describe(exc: BaseException) -> str:
    """One line for an exception: its message, or its type when it has none."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, AgentError) and text:
        return text
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Timeline:
    """Collects events, passes each to ``emit`` at once, and runs the steps."""

    def __init__(
        self,
        emit: Callable[[Event], None] | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events: list[Event] = []
        self.agent_clock: Callable[[], float] | None = None
        """Set once the simulated clock exists; events then carry its time."""
        self.current_step: str | None = None
        self.failed: DemoFailure | None = None
        self._emit = emit
        self._monotonic = monotonic
        self._start = monotonic()

    def elapsed(self) -> float:
        return self._monotonic() - self._start

    def note(self, text: str, kind: str = INFO) -> Event:
        agent_time = self.agent_clock() if self.agent_clock is not None else None
        event = Event(self.elapsed(), agent_time, text, kind)
        self.events.append(event)
        if self._emit is not None:
            self._emit(event)
        return event

    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """Run a step; any error inside becomes a :class:`DemoFailure` of this step."""
        self.current_step = name
        self.note(name, STEP)
        try:
            yield
        except DemoFailure as failure:
            self._fail(failure)
            raise
        except (AgentError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
            wrapped = DemoFailure(name, describe(exc))
            self._fail(wrapped)
            raise wrapped from exc
        finally:
            self.current_step = None

    def check(self, held: bool, text: str, reason: str) -> None:
        """A check of the story: noted as ``ok``, or the current step fails with ``reason``."""
        if not held:
            raise DemoFailure(self.current_step or "check", reason)
        self.note(text, OK)

    def _fail(self, failure: DemoFailure) -> None:
        if self.failed is None:
            self.failed = failure
            self.note(f"{failure.step}: {failure.reason}", FAIL)
