"""schemathesis runs the OpenAPI document against a live `idhooks serve` (real SQLite store, an operator
token): every operation, generated parameters and bodies; no answer may be a server error, and every answer
must match the document (status, content type, schema). Slow; the example count is kept modest."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from engine.api.openapi import document
from tests.api_support import OPERATOR_TOKEN, api_config, login_event
from tests.conftest import ServerProcess, free_port, signed

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    server = ServerProcess(api_config(folder), free_port())
    import requests

    for name in ("jane@example.com", "<b>bob</b>@example.com"):
        body, headers = signed(login_event(name))
        requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10)
    yield server
    server.stop()


SCHEMA = schemathesis.openapi.from_dict(document())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def test_the_live_server_serves_this_document(live_server):
    import requests

    assert requests.get(live_server.url + "/api/v1/openapi.json", headers=AUTH, timeout=10).json() == document()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_every_operation_answers_without_server_errors_and_as_documented(operation, live_server):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def call(case) -> None:
        case.call_and_validate(base_url=live_server.url + "/api/v1", headers=AUTH, checks=CHECKS, timeout=30)

    call()
    assert "Traceback" not in live_server.log()
