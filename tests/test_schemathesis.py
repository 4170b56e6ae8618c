"""schemathesis against the OpenAPI document, on the real app (OpenBao from the fixtures): a
bounded number of generated requests per operation and mode (valid and invalid input), as an
operator, with schemathesis' checks.

No 500, and every response (status, content type, headers, body) is one the document describes.
Generated names mostly miss (404s), so valid calls other than a DELETE are aimed at a real org and
project (the fixtures'), with the rest of their input as generated: creations, provider writes and
token issues run for real.

Left out: `positive_data_acceptance` (schema-valid input the server refuses): some rules are not
expressible in a JSON schema, and answer a 422 that names the field instead — rules between fields
(only a custom provider sets `auth_type`), rules of this JetPero's configuration (private upstreams,
the longest token lifetime) and of the project's state (a token's scope names its providers).
The operations are looped over inside one test rather than parametrized at collection: the schema
comes from the session's app, and schemathesis' lazy fixture loader does not work with pytest 9.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

MAX_EXAMPLES = 4  # per operation and mode: about 25 operations, the whole test in well under a minute
STREAMS = ("/usage/stream",)  # held open for seconds by design: not for a bounded run


def _check(operation, mode: GenerationMode, real: dict, headers: dict) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        if mode is GenerationMode.POSITIVE and case.method != "DELETE" and case.path_parameters:
            case.path_parameters.update({k: v for k, v in real.items() if k in case.path_parameters})
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    run()


def test_the_api_does_what_its_document_says(app, operator_token, project):
    org, slug = project.split("/")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if not op.path.endswith(STREAMS)]
    assert len(operations) > 20
    failures = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _check(operation, mode, {"org": org, "project": slug}, {"Authorization": f"Bearer {operator_token}"})
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, reported together
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
