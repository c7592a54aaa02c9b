"""Buyer email addresses: the one check every entry point (checkout, buy form, CLI) uses.

Each caller words the refusal for its own audience (a JSON field error, a sentence on the
buy page, a CLI parameter error), so the check says *why* and leaves the wording to them.
"""

from __future__ import annotations

from enum import StrEnum

from email_validator import EmailNotValidError, validate_email

# RFC 5321's path limit; also the width of every email column (gateway/db/models.py).
MAX_EMAIL_CHARS = 320


class Problem(StrEnum):
    MISSING = "missing"
    TOO_LONG = "too_long"
    MALFORMED = "malformed"


class InvalidEmail(ValueError):
    def __init__(self, problem: Problem, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem


def normalize_email(raw: object) -> str:
    """The normalised address, or `InvalidEmail` saying what is wrong with `raw`.

    The length is checked before the validator runs, so IDNA parsing never sees more than
    `MAX_EMAIL_CHARS` characters. Deliverability is not checked: no DNS on the hot path.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidEmail(Problem.MISSING, "an email address is required")
    if len(raw) > MAX_EMAIL_CHARS:
        raise InvalidEmail(Problem.TOO_LONG, f"at most {MAX_EMAIL_CHARS} characters")
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidEmail(Problem.MALFORMED, str(exc)) from exc
