"""Fuzz the API from its own OpenAPI schema: no input may cause a 5xx.

Schemathesis generates requests that match the schema (and some that do
not). Every answer must be a 2xx or a 4xx JSON error naming the problem.
FUZZ_EXAMPLES sets the budget of examples per operation (without
shrinking), so each new route adds the same bounded work: 5 in `make test`,
25 in `make test-ci` (what CI runs), 500 in `make fuzz`; the last two also
send schemathesis' boundary cases (FUZZ_BOUNDARIES=1). Nothing is timed: schemathesis would otherwise give each
request 10 s, which a first-seen policy on a busy machine can take.
"""

import os

import schemathesis
from hypothesis import HealthCheck, Phase, settings

from api.main import app

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
BOUNDARIES = os.environ.get("FUZZ_BOUNDARIES") == "1"
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# Schemathesis' coverage phase sends every boundary case the schema defines,
# whatever the budget: dozens per operation, and for a sweep endpoint each
# is a chart of up to its largest count. FUZZ_BOUNDARIES=1 turns it on, in
# `make test-ci` and `make fuzz`.
schema.config.phases.coverage.enabled = BOUNDARIES


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    # A failure is reported as found: shrinking it could take many more calls.
    phases=[Phase.explicit, Phase.generate],
)
def test_no_input_causes_a_server_error(case, engine):
    # Schemathesis gives up after 10 s by default, which a calculation can
    # take on a busy machine; the app's own deadline decides instead.
    response = case.call(timeout=None)

    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["status"] == "error" and body["message"], body
