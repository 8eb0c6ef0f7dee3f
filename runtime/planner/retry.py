"""When (and whether) to retry a failed VLM attempt inside a request's deadline.

Why a rule of its own: a retry that starts with a few milliseconds left is doomed, and when it
times out the caller learns "timed out" instead of the error that mattered (HTTP 500, a reversed
box). Whether that happened used to depend on how much of the budget earlier steps had eaten, so
the same flaky VLM gave an answer on a quiet machine and a failure on a loaded one. The rule here
depends only on the time left:

- a retry must keep at least `min_attempt_s` for itself; the backoff after a 5xx/connection error
  (or 0 after an invalid reply or a timeout) is shortened to leave that, never sleeping past it;
- a 429's Retry-After is the server's wish and is not shortened: if waiting it leaves less than
  `min_attempt_s`, there is no retry;
- with no retry possible, the last real error is raised at once, with a note saying why.
"""

from __future__ import annotations

from runtime.planner.backend import PlannerTimeoutError, VLMError, VLMImageLimitError


def retry_wait(error: Exception, attempts_done: int, max_attempts: int, left_s: float,
               backoff_s: float, min_attempt_s: float) -> tuple[float | None, str]:
    """(seconds to wait before the next attempt, "") or (None, why there is no next attempt)."""
    if attempts_done >= max_attempts:
        return None, ""
    server_wait = isinstance(error, VLMError) and error.retry_after_s is not None
    if server_wait:
        wait = float(error.retry_after_s)
    elif isinstance(error, VLMError):
        wait = min(backoff_s * attempts_done, max(0.0, left_s - min_attempt_s))
    else:
        wait = 0.0  # an invalid reply or a timeout: the next attempt may start at once
    if left_s - wait < min_attempt_s:
        asked = f" and the server asked to wait {wait:g} s (Retry-After)" if server_wait else ""
        return None, (f"no attempt {attempts_done + 1}/{max_attempts}: {max(0.0, left_s):.2f} s left before the "
                      f"deadline{asked}, less than the {min_attempt_s:g} s an attempt is given (min_attempt_s)")
    return wait, ""


def with_note(error: Exception, note: str) -> Exception:
    """The same kind of error with `note` appended to its message (the original stays its __cause__)."""
    if not note:
        return error
    message = f"{error}; {note}"
    if isinstance(error, VLMImageLimitError):
        new: Exception = VLMImageLimitError(message, error.status)
    elif isinstance(error, VLMError):
        new = type(error)(message, status=error.status, retryable=error.retryable,
                                     retry_after_s=error.retry_after_s)
    elif isinstance(error, PlannerTimeoutError):
        new = PlannerTimeoutError(message)
    else:
        new = type(error)(message)
    new.__cause__ = error
    return new
