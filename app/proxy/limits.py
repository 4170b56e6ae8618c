"""The limits concern: IP allowlists, granular scopes, rate limits and budgets, before forwarding.

    admit(call)  -> the token's `Rules` (cached per worker, evicted by `policy-changed`); for a
                    token with none, nothing else (no body read, no store call). Otherwise, in
                    order: every IP allowlist (403), the scope's routes (403), the body's model
                    (403; the body read once, at most `BODY_LIMIT` bytes, and handed on to the
                    forward phase as it came), then the rate windows, stream lease and budget
                    reservations (429, or 503 when the counter store is down)
    settle(call) -> the reservations corrected to the real spend (`call.notes["usage"]`, which
                    the usage concern before this one puts there) and the stream lease released

The client IP is `REMOTE_ADDR`: the socket's, or the one `ProxyFix` derived from the trusted
proxies (`JETPERO_TRUSTED_PROXIES`), so a client's own `X-Forwarded-For` never counts.
"""

from __future__ import annotations

import io
import threading
from decimal import Decimal

from flask import Response, current_app
from werkzeug.exceptions import HTTPException

from ..errors import ApiError
from ..rules.policy import Estimate, Price, Subjects
from ..rules.scope import MAX_BODY_DEFAULT, BodyFields, BodyTooLarge, BodyUnreadable, read_body_fields
from ..services import policies
from ..services.limits import Admission, Limits, refusal_response
from ..store.counters import counter_store
from .call import Call

BODY_LIMIT = MAX_BODY_DEFAULT  # bytes of a request body read to find its model and max_tokens
ESTIMATE_TOKENS = 4096  # completion tokens reserved without max_tokens, unless the project says otherwise
ADMISSION = "limits.admission"  # call.notes key: what admit took, for settle
_NO_BODY = BodyFields(None, None, False, b"")


class Refusal(HTTPException):
    """A limit's refusal, answered as built (OpenAI's error shape, Retry-After, RateLimit fields)."""

    def __init__(self, response: Response):
        super().__init__(response=response)
        self.code = response.status_code


class LimitsConcern:
    """One per app; its counter store is opened at the first limited call (after the fork)."""

    def __init__(self, config) -> None:
        self.config = config
        self.worker = None
        self._engine: Limits | None = None
        self._lock = threading.Lock()

    def engine(self) -> Limits:
        if self._engine is not None:
            return self._engine
        with self._lock:
            if self._engine is None:
                store = counter_store(self.config.JETPERO_REDIS_URL, self.config.JETPERO_COUNTERS_PATH)
                self._engine = Limits(store, self.config.JETPERO_LIMITS_ON_STORE_DOWN)
            return self._engine

    def admit(self, call: Call) -> None:
        worker = self.worker or self._bind()
        claims = call.claims
        # A child token has its parent's policy; an end-user token (from the exchange) has none of
        # its own, only the project's (and its end-user limits): no Vault read per minted token.
        key = (claims["org"], claims["project"], None if "idp" in claims else claims.get("parent", claims["jti"]))
        rules = worker.policies.get_or_load(key, policies.rules, worker.vault, *key)
        if rules is policies.UNLIMITED:
            return
        ip = call.request.remote_addr or ""
        for whose, allowlist in rules.allowlists:
            if not allowlist.allows(ip):
                raise ApiError(403, f"This client address ({ip[:64]}) is not in the {whose}'s IP allowlist.")
        scope, policy = rules.scope, rules.policy
        if refusal := scope.route_refusal(call.method, call.path):
            raise ApiError(403, refusal[0].upper() + refusal[1:] + ".")
        body = self._body(call, bool(scope.models), policy.reads_body)
        if refusal := scope.model_refusal(body.model):
            raise ApiError(403, refusal[0].upper() + refusal[1:] + ".")
        if policy.empty:
            return
        price = None
        if policy.costs:
            table = worker.policies.get_or_load(
                (*key[:2], call.provider, "prices"), policies.prices, worker.vault, *key[:2], call.provider
            )
            if (price := policies.price_of(table, body.model)) is None:
                raise ApiError(
                    403,
                    f"This token has a cost budget, but the provider {call.provider} has no price for the model"
                    f" {str(body.model)[:200]!r}: an admin sets one (PUT …/providers/{call.provider}/prices).",
                )
        default = rules.estimate_tokens or ESTIMATE_TOKENS
        estimate = Estimate.of(body.max_tokens, default, len(body.body), price, body.stream)
        subjects = Subjects(f"{key[0]}/{key[1]}", key[2], claims.get("end_user"), ip or None)
        admission = self.engine().admit(subjects, policy, estimate)
        if admission.refusal is not None:
            raise Refusal(self._refused(call, admission))
        call.notes[ADMISSION] = (admission, estimate, price, bool(body.body))

    def settle(self, call: Call) -> None:
        taken: tuple[Admission, Estimate, Price | None, bool] | None = call.notes.pop(ADMISSION, None)
        if taken is None:
            return
        admission, estimate, price, generated = taken
        usage = call.notes.get("usage") or {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        total = usage.get("total_tokens")
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        if total is not None:
            cost = price.cost(prompt or 0, completion or max(total - (prompt or 0), 0)) if price else Decimal(0)
            self.engine().settle(admission, total, cost)
        elif call.sent is None or (call.status or 0) >= 400 or not generated:
            self.engine().settle(admission, 0)  # never sent, refused by the provider, or no body to generate from
        else:  # a generation whose spend is unknown (a cut stream, a stream without usage): the reservation stands
            self.engine().settle(admission, estimate.tokens, estimate.cost)

    def _bind(self):
        self.worker = current_app.extensions["jetpero"]
        return self.worker

    @staticmethod
    def _body(call: Call, for_models: bool, for_budgets: bool) -> BodyFields:
        """The body's fields, read at most once and put back for the forward phase byte for byte."""
        request = call.request
        has_body = bool(request.content_length) or "chunked" in call.environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not (for_models or for_budgets) or not has_body:
            return _NO_BODY
        try:
            fields = read_body_fields(request.stream.read, BODY_LIMIT)
        except BodyUnreadable as exc:
            status = 413 if isinstance(exc, BodyTooLarge) else 403 if for_models else 400
            why = "its model checked" if for_models else "its max_tokens read for the budget"
            raise ApiError(status, f"This token needs the request body {why}, but {exc}.") from None
        request.stream = io.BytesIO(fields.body)  # what forward reads (werkzeug's cached_property)
        return fields

    @staticmethod
    def _refused(call: Call, admission: Admission) -> Response:
        status, headers, body = refusal_response(admission.refusal)
        response = Response(body, status=status, headers=headers)
        if call.origin:  # the origin was checked before the concerns: let the page read the 429
            response.headers["Access-Control-Allow-Origin"] = call.origin
            response.headers["Access-Control-Expose-Headers"] = "Retry-After, RateLimit, RateLimit-Policy"
            response.headers["Vary"] = "Origin"
        return response
