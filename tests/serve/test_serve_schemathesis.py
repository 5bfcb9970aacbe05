"""Property-based testing of the whole API from its own OpenAPI document (schemathesis):
generated valid and invalid requests for every operation must never get a 500, and every
response must match the document (status code, content type, headers, body schema).

The document is built at import time from an app around a placeholder model (building it
needs no model), and checked to be the one the live server serves; the requests go to a
live server running the demo model.

``positive_data_acceptance`` is left out on purpose: a schema cannot say "a base64 string
that decodes to a real image", so schema-valid bodies with random image bytes are rightly
refused with 422. ``negative_data_rejection`` runs for JSON bodies only: in multipart every
value is text, so a "wrong type" mutation (an object where a class name goes) arrives as
the valid string "{}" and cannot be told apart.
"""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from ofa.serve import ServeSettings, create_app

DOCUMENT = create_app(object(), ServeSettings()).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_live_server_serves_this_document(shared_server):
    assert httpx.get(f"{shared_server.url}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
def test_api_conforms_to_its_document(case, shared_server):
    excluded = [positive_data_acceptance]
    if case.media_type == "multipart/form-data":
        excluded.append(negative_data_rejection)
    case.call_and_validate(base_url=shared_server.url, excluded_checks=excluded, timeout=60)
