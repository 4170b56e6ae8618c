"""schemathesis against the OpenAPI document, on the real app (OpenBao from the fixtures): a
bounded number of generated requests per operation and mode (valid and invalid input), as an
operator, with every one of schemathesis' checks.

No 500, and every response (status, content type, headers, body) is one the document describes.
Generated names mostly miss (404s), so every call but a DELETE is aimed at a real org and project
(the fixtures'), with the rest of its input as generated: creations, provider writes and token
issues run for real.
(The operations are looped over inside one test, not parametrized at collection: the schema
comes from the session's app, and schemathesis' lazy fixture loader does not work with pytest 9.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

MAX_EXAMPLES = 5  # per operation and mode: about 25 operations, the whole test in well under a minute
STREAMS = ("/usage/stream",)  # held open for seconds by design: not for a bounded run


def test_the_api_does_what_its_document_says(app, operator_token, project):
    real = dict(zip(("org", "project"), project.split("/")))
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {operator_token}"}
    failures = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if not op.path.endswith(STREAMS)]
    assert len(operations) > 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case):
                if mode is GenerationMode.POSITIVE and case.method != "DELETE" and case.path_parameters:
                    case.path_parameters.update({k: v for k, v in real.items() if k in case.path_parameters})
                case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, reported together
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
