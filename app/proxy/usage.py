"""The usage concern: one usage record per proxied call, and the call's token counts for the
concerns after it (`call.notes["usage"]`, which the limits concern reads to settle budgets).

    relay(call)  -> the observer of the answer: a `UsageMeter` reading model and token counts
                    from each chunk as it passes (never buffering a stream, never delaying it)
    settle(call) -> `call.notes["usage"]` = `{model, prompt_tokens, completion_tokens,
                    total_tokens}`, and one record queued on the worker's `UsageWriter`

Nothing here can fail or slow a call: the writer only appends to a bounded queue (a failure is
counted as dropped), and the phases stop a concern's error at the concern. A call refused before
its token was verified has no org or project: it is counted in the request metrics only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..rules.usage import FIELDS, UsageMeter
from ..services.usage import UsageWriter
from ..store.db import now_ms

if TYPE_CHECKING:
    from .call import Call

METER = "usage.meter"  # call.notes key: the answer's meter, from relay to settle
NOTHING = dict.fromkeys(FIELDS)


class Usage:
    """One per app: `relay` meters the answer, `settle` records the call on `writer`."""

    def __init__(self, writer: UsageWriter) -> None:
        self.writer = writer

    def relay(self, call: Call):
        answer = call.answer
        headers = answer.headers
        try:
            meter = UsageMeter.for_template(
                call.record.get("template", ""),
                headers.get("Content-Type"),
                headers.get("Content-Encoding"),
                answer.length_remaining,  # the declared length, before any byte is read
            )
        except Exception:  # noqa: BLE001 - an answer the meter cannot read is relayed unmetered
            return None
        call.notes[METER] = meter
        return meter.feed  # never raises

    def settle(self, call: Call) -> None:
        meter = call.notes.pop(METER, None)
        found = (meter.result() if meter is not None else None) or NOTHING
        call.notes["usage"] = found
        claims = call.claims
        if claims is None:
            return
        started, sent, ended, ttfb = call.started, call.sent, call.ended, call.upstream_ms
        self.writer.add(  # in the order of `ROW`
            (
                now_ms(),
                claims["org"],
                claims["project"],
                claims.get("jti"),
                claims.get("token_name"),
                claims.get("env"),
                claims.get("end_user"),
                call.provider,
                call.method,
                "/" + call.path,
                call.status or 0,
                int((ended - started) * 1000),
                None if ttfb is None else int(ttfb),
                None if sent is None else int((ended - sent) * 1000),
                call.bytes_in,
                call.bytes_out,
                found["model"],
                found["prompt_tokens"],
                found["completion_tokens"],
                found["total_tokens"],
            )
        )


# The columns of the row `settle` builds, in its order: the writer's (a test holds them equal).
ROW = (
    "at_ms",
    "org",
    "project",
    "token_id",
    "token_name",
    "environment",
    "end_user",
    "provider",
    "method",
    "path",
    "status",
    "duration_ms",
    "ttfb_ms",
    "upstream_ms",
    "bytes_in",
    "bytes_out",
    *FIELDS,
)
