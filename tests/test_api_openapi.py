"""The OpenAPI document at /api/v1/openapi.json stays in sync with the API: it lists exactly the routes the
app serves, with the methods they answer, and real answers validate against the documented schemas."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from engine.api.openapi import document
from engine.api.resources import ROUTES
from tests.api_support import OPERATOR_TOKEN, VIEWER_TOKEN, Deployment, deployment, login_event


@pytest.fixture
def api(tmp_path: Path) -> Deployment:
    d = deployment(tmp_path)
    yield d
    d.service.store.close()


def _methods(resource: type) -> set[str]:
    return {name[3:] for name in dir(resource) if name in ("on_get", "on_post")}


def test_the_document_lists_exactly_the_served_routes_and_methods():
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert {path: set(ops) for path, ops in doc["paths"].items()} == \
        {path: _methods(resource) for path, resource in ROUTES}
    jsonschema.Draft202012Validator.check_schema({"components": doc["components"]})


def test_the_served_document_is_the_module_document(api):
    assert api.get("/api/v1/openapi.json").json == document()


def check(result, path: str, method: str = "get") -> None:
    """The answer validates against the schema documented for its status."""
    doc = document()
    responses = doc["paths"][path][method]["responses"]
    assert str(result.status_code) in responses, (path, result.status_code, result.text)
    schema = responses[str(result.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(result.json, {**schema, "components": doc["components"]},
                        cls=jsonschema.Draft202012Validator)


def test_answers_match_the_documented_schemas(api):
    jti = api.send(login_event("jane@example.com", ip="10.0.0.1"))
    dead = api.dead_letter()
    check(api.get("/api/v1/events"), "/events")
    check(api.get("/api/v1/events", query_string="limit=0"), "/events")
    check(api.get("/api/v1/events", token=None), "/events")
    check(api.get(f"/api/v1/events/{jti}"), "/events/{jti}")
    check(api.get("/api/v1/events/nope"), "/events/{jti}")
    check(api.get("/api/v1/users/jane@example.com/timeline"), "/users/{username}/timeline")
    check(api.get("/api/v1/deliveries"), "/deliveries")
    check(api.post(f"/api/v1/deadletters/{dead}/retry", token=VIEWER_TOKEN), "/deadletters/{id}/retry", "post")
    check(api.post(f"/api/v1/deadletters/{dead}/retry"), "/deadletters/{id}/retry", "post")
    check(api.post("/api/v1/deadletters/nope/drop"), "/deadletters/{id}/drop", "post")
    check(api.get("/api/v1/quarantine"), "/quarantine")
    check(api.post("/api/v1/quarantine/nope/reverify"), "/quarantine/{id}/reverify", "post")
    check(api.post("/api/v1/quarantine/nope/drop"), "/quarantine/{id}/drop", "post")
    check(api.get("/api/v1/subscriptions"), "/subscriptions")
    check(api.get("/api/v1/rules"), "/rules")
    check(api.post("/api/v1/rules/test", body={"catalog": "login.loginFailed"}), "/rules/test", "post")
    check(api.post("/api/v1/rules/test", body={"catalog": 1}), "/rules/test", "post")
    check(api.get("/api/v1/events", token=OPERATOR_TOKEN), "/events")
