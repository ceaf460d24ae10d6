"""SlackNotifier: the :class:`~canaryd.core.ports.Notifier` that posts notices to Slack.

``notify`` only enqueues (constant time, never blocks, never raises); one worker thread sends.
Assumptions and guarantees:

- The queue is bounded: when full, the oldest queued message is dropped and reported through
  ``on_failure`` with :class:`QueueFull`, so a Slack outage costs memory O(``max_queue``).
- De-duplication by ``(target, notice.key)`` within the process while queued or sent; a delivery
  given up on is forgotten, so the caller's outbox (``status.outbox``) can queue it again.
- With a bot token, the first message of a rollout revision starts a thread and later messages
  of the same revision reply in it (``thread_ts``); failures and promotions are also broadcast
  to the channel. Thread memory is per process (a restart starts a new thread).
- Credentials never reach a log line: slack-sdk's own logger (which logs request URLs, i.e. the
  webhook secret, at INFO) is kept at WARNING, and error texts are redacted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from canaryd.api.models import Severity
from canaryd.core.ports import AlertTarget
from canaryd.core.types import Notice, NoticeKind

from .messages import build_message
from .retry import RetryPolicy, retry_handlers
from .target import SLACK_API_BASE_URL, SlackTarget, severity_meets

log = logging.getLogger(__name__)

# slack-sdk logs full request URLs (an incoming webhook URL *is* the credential) at INFO.
_sdk_log = logging.getLogger("canaryd.adapters.slack.sdk")
_sdk_log.setLevel(logging.WARNING)

FailureCallback = Callable[[AlertTarget, Notice, Exception], None]


class SlackDeliveryError(Exception):
    """Slack answered, but not with success (after retries)."""


class QueueFull(Exception):  # noqa: N818 - reads better in metrics and logs than QueueFullError
    """The notice was dropped because the queue was full (oldest dropped first)."""


class NotifierClosed(Exception):  # noqa: N818
    """The notifier was closed before the notice could be sent."""


@dataclass(frozen=True, slots=True)
class _Job:
    target: SlackTarget
    notice: Notice


class SlackNotifier:
    """Queue + worker that posts Block Kit messages through slack-sdk."""

    def __init__(
        self,
        *,
        max_queue: int = 1000,
        on_failure: FailureCallback | None = None,
        on_sent: Callable[[AlertTarget, Notice], None] | None = None,
        retry: RetryPolicy | None = None,
        timeout_seconds: int = 10,
        dedupe_capacity: int = 10_000,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self._max_queue = max_queue
        self._on_failure = on_failure
        self._on_sent = on_sent
        self._retry = retry or RetryPolicy()
        self._timeout = timeout_seconds
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._dedupe_capacity = dedupe_capacity
        self._threads: OrderedDict[tuple[str, str, str, str], str] = OrderedDict()
        self._clients: dict[str, WebClient | WebhookClient] = {}
        self.sent = 0
        """Messages Slack accepted."""
        self.failed = 0
        """Messages given up on (after retries, or dropped from a full queue)."""
        self._worker = threading.Thread(target=self._run, name="canaryd-slack", daemon=True)
        self._worker.start()

    # ---- Notifier -----------------------------------------------------------------------

    def notify(self, notice: Notice, targets: Sequence[AlertTarget]) -> int:
        """Queue ``notice`` for each SlackTarget whose ``min_severity`` it meets; returns how
        many were queued (each is reported once, through ``on_sent`` or ``on_failure``).

        Targets that are not :class:`SlackTarget` are ignored (another notifier owns them)."""
        dropped: list[_Job] = []
        refused: list[_Job] = []
        queued = 0
        with self._cond:
            for target in targets:
                if not isinstance(target, SlackTarget):
                    continue
                if not severity_meets(notice.severity, target.min_severity):
                    continue
                if self._closed:
                    # Reported as failed (not silently dropped): the caller keeps it pending.
                    refused.append(_Job(target, notice))
                    queued += 1
                    continue
                key = (target.name, notice.key)
                if key in self._seen:
                    continue
                self._remember(key)
                if len(self._queue) >= self._max_queue:
                    dropped.append(self._queue.popleft())
                self._queue.append(_Job(target, notice))
                queued += 1
            self._cond.notify_all()
        for job in dropped:
            self._fail(job, QueueFull(f"slack queue full ({self._max_queue}); dropped oldest"))
        for job in refused:
            self._fail(job, NotifierClosed("notifier closed"), quiet=True)
        return queued

    # ---- lifecycle ----------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far was sent or failed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting notices, give queued ones ``timeout`` seconds, stop the worker.

        Whatever is still queued afterwards is reported as failed."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            leftover = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        if leftover:
            log.warning("slack notifier closed with %d notices unsent", len(leftover))
        for job in leftover:
            self._fail(
                job, NotifierClosed("notifier closed before the notice was sent"), quiet=True
            )
        self._worker.join(timeout=max(timeout, 0.1))

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    # ---- worker -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and not self._queue:
                    return
                job = self._queue.popleft()
                self._busy = True
            try:
                self._send(job)
            except Exception as error:  # the worker must survive anything a send can raise
                self._fail(job, error)
            else:
                self.sent += 1
                if self._on_sent is not None:
                    self._call_safely(self._on_sent, job.target, job.notice)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send(self, job: _Job) -> None:
        target, notice = job.target, job.notice
        message = build_message(notice, dashboard_url=target.dashboard_url)
        client = self._client(target)
        if isinstance(client, WebhookClient):
            response = client.send(text=message.text, blocks=message.blocks)
            if response.status_code != 200:
                raise SlackDeliveryError(
                    f"webhook answered HTTP {response.status_code}: {response.body[:200]}"
                )
            return
        thread_key = (target.name, notice.namespace, notice.rollout, notice.revision)
        thread_ts = self._threads.get(thread_key) if notice.revision else None
        broadcast = thread_ts is not None and (
            # The ending matters to the whole channel, not only to thread followers.
            notice.kind in (NoticeKind.PROMOTED, NoticeKind.ROLLED_BACK)
            or notice.severity == Severity.ERROR
        )
        result = client.chat_postMessage(
            channel=target.channel or "",
            text=message.text,
            blocks=message.blocks,
            thread_ts=thread_ts,
            reply_broadcast=True if broadcast else None,
        )
        ts = result.get("ts")
        if thread_ts is None and notice.revision and isinstance(ts, str):
            self._threads[thread_key] = ts
            while len(self._threads) > self._dedupe_capacity:
                self._threads.popitem(last=False)

    def _client(self, target: SlackTarget) -> WebClient | WebhookClient:
        # Cached per target name + credential fingerprint: a rotated Secret gets a new client.
        key = f"{target.name}\0{hash(target.secrets)}\0{target.base_url}"
        client = self._clients.get(key)
        if client is None:
            handlers = retry_handlers(self._retry)
            if target.webhook_url is not None:
                client = WebhookClient(
                    url=target.webhook_url,
                    timeout=self._timeout,
                    retry_handlers=handlers,
                    logger=_sdk_log,
                )
            else:
                client = WebClient(
                    token=target.token,
                    base_url=target.base_url or SLACK_API_BASE_URL,
                    timeout=self._timeout,
                    retry_handlers=handlers,
                    logger=_sdk_log,
                )
            self._clients[key] = client
        return client

    def _remember(self, key: tuple[str, str]) -> None:
        self._seen[key] = None
        while len(self._seen) > self._dedupe_capacity:
            self._seen.popitem(last=False)

    def _fail(self, job: _Job, error: Exception, *, quiet: bool = False) -> None:
        self.failed += 1
        with self._cond:
            # Given up: the caller's outbox queues it again later, which must not be deduped.
            self._seen.pop((job.target.name, job.notice.key), None)
        if not quiet:
            log.warning(
                "slack notice %s to %s failed: %s: %s",
                job.notice.key,
                job.target.name,
                type(error).__name__,
                redact(str(error), job.target.secrets),
            )
        if self._on_failure is not None:
            self._call_safely(self._on_failure, job.target, job.notice, error)

    @staticmethod
    def _call_safely(callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:  # a broken metrics callback must not kill the worker
            log.exception("slack notifier callback failed")


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret (and a webhook URL's path) replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
