"""Bounded retry policy for slack-sdk clients: 429 honours Retry-After, 5xx backs off.

slack-sdk's built-in handlers retry only 500/503 once and sleep whatever Retry-After says; ours
cap the wait (a misbehaving proxy must not park the worker for an hour) and retry every 5xx and
connection error a few times with exponential backoff. All sleeping happens in the notifier's
worker thread, never in the controller's tick.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before a notice counts as failed."""

    max_retries: int = 3
    """Retries after the first attempt, per cause (rate limit, server error, connection)."""
    backoff_seconds: float = 0.5
    """First backoff for 5xx and connection errors; doubled at each retry."""
    max_backoff_seconds: float = 8.0
    max_retry_after_seconds: float = 30.0
    """Cap on a 429's Retry-After (longer waits fail the notice rather than stall the queue)."""


class _PolicyHandler(RetryHandler):
    """A RetryHandler bounded by a :class:`RetryPolicy`; subclasses say when and how long."""

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(max_retry_count=policy.max_retries)
        self.policy = policy

    def _wait_seconds(self, state: RetryState, response: HttpResponse | None) -> float:
        raise NotImplementedError

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        time.sleep(self._wait_seconds(state, response))
        state.increment_current_attempt()


class RateLimitHandler(_PolicyHandler):
    """Retries HTTP 429 after the server's Retry-After (seconds), capped by the policy."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        return retry_after(response) <= self.policy.max_retry_after_seconds

    def _wait_seconds(self, state: RetryState, response: HttpResponse | None) -> float:
        return retry_after(response) if response is not None else 1.0


class ServerErrorHandler(_PolicyHandler):
    """Retries any 5xx and connection errors with capped exponential backoff."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None:
            return 500 <= response.status_code <= 599
        return error is not None

    def _wait_seconds(self, state: RetryState, response: HttpResponse | None) -> float:
        backoff: float = self.policy.backoff_seconds * (2**state.current_attempt)
        return min(backoff, self.policy.max_backoff_seconds)


def retry_after(response: HttpResponse) -> float:
    """Seconds from the Retry-After header (integer seconds, as Slack sends); 1 when absent."""
    for key, values in response.headers.items():
        if key.lower() == "retry-after" and values:
            try:
                return max(0.0, float(values[0]))
            except ValueError:
                return 1.0
    return 1.0


def retry_handlers(policy: RetryPolicy) -> list[RetryHandler]:
    return [RateLimitHandler(policy), ServerErrorHandler(policy)]
