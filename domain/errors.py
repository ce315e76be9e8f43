"""Why a command was refused, in terms the service maps one-to-one onto API errors.

- :class:`ValidationFailed` -> 422 ``validation-error`` with ``errors: [{path, message}]``
- :class:`InvalidTransition` -> 409 ``invalid-transition`` with ``current_phase``,
  ``paused``, ``allowed_events``
- :class:`GuardFailed` -> 422 ``guard-failed`` with ``unmet: [...]``
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class DomainError(Exception):
    """A command was refused; nothing was recorded."""

    def to_dict(self) -> dict[str, Any]:
        """The problem-specific members of the error body (JSON-ready)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class FieldError:
    """One wrong or missing field: ``path`` is like ``data.goals[0].target_date``."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class ValidationFailed(DomainError):
    """Fields are missing or wrong (types, vocabularies, ranges, references)."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in self.errors))

    def to_dict(self) -> dict[str, Any]:
        return {"errors": [error.to_dict() for error in self.errors]}


class InvalidTransition(DomainError):
    """The event type is not accepted in the current phase (or not while paused)."""

    def __init__(
        self, event_type: str, current_phase: str, paused: bool, allowed_events: Iterable[str]
    ) -> None:
        self.event_type = event_type
        self.current_phase = current_phase
        self.paused = paused
        self.allowed_events: list[str] = list(allowed_events)
        state = f"{current_phase} (paused)" if paused else current_phase
        super().__init__(f"{event_type} is not accepted in {state}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "current_phase": self.current_phase,
            "paused": self.paused,
            "allowed_events": self.allowed_events,
        }


@dataclass(frozen=True, slots=True)
class UnmetRule:
    """A guard that did not hold: its name and what the user can do about it."""

    guard: str
    message: str


class GuardFailed(DomainError):
    """The event type is accepted in this phase, but the rules of its transition are unmet."""

    def __init__(self, event_type: str, current_phase: str, unmet: Iterable[UnmetRule]) -> None:
        self.event_type = event_type
        self.current_phase = current_phase
        self.unmet_rules: list[UnmetRule] = list(unmet)
        super().__init__(f"{event_type}: " + "; ".join(self.unmet))

    @property
    def unmet(self) -> list[str]:
        """One actionable sentence per unmet rule (the API's ``unmet``)."""
        return [rule.message for rule in self.unmet_rules]

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "current_phase": self.current_phase,
            "unmet": self.unmet,
            "unmet_guards": [rule.guard for rule in self.unmet_rules],
        }
