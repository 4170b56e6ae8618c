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

if TYPE_CHECKING:
    from .call import Call

METER = "usage.meter"  # call.notes key: the answer's meter, from relay to settle
NOTHING = dict.fromkeys(FIELDS)


def _ms(start: float | None, end: float | None) -> int | None:
    return None if start is None or end is None else int((end - start) * 1000)


class Usage:
    """One per app: `relay` meters the answer, `settle` records the call on `writer`."""

    def __init__(self, writer: UsageWriter) -> None:
        self.writer = writer

    def relay(self, call: Call):
        headers = call.answer.headers
        try:
            meter = UsageMeter.for_template(
                call.record.get("template", ""), headers.get("Content-Type"), headers.get("Content-Encoding")
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
        self.writer.record(
            org=claims["org"],
            project=claims["project"],
            token_id=claims.get("jti"),
            token_name=claims.get("token_name"),
            environment=claims.get("env"),
            end_user=claims.get("end_user"),
            provider=call.provider,
            method=call.method,
            path="/" + call.path,
            status=call.status or 0,
            duration_ms=_ms(call.started, call.ended) or 0,
            ttfb_ms=None if call.upstream_ms is None else int(call.upstream_ms),
            upstream_ms=_ms(call.sent, call.ended),
            bytes_in=call.bytes_in,
            bytes_out=call.bytes_out,
            **found,
        )
