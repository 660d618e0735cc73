"""The JSON API under /api/v1 in-process (falcon.testing) on a real SQLite store: auth and roles, every
listing with its filters and cursors, the actions the CLI also has, masking for viewers, the rule playground,
and hostile values in every parameter."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from engine.cli import main
from tests.api_support import (API_CONFIG, OPERATOR_TOKEN, VIEWER_TOKEN, XSS_NAME, Deployment, deployment,
                               login_event)
from tests.conftest import sample_event, signed


API_CONFIG_WITH_LISTEN = API_CONFIG + "  listen: 127.0.0.1:8081\n"


@pytest.fixture
def api(tmp_path: Path) -> Deployment:
    d = deployment(tmp_path)
    yield d
    d.service.store.close()


def test_no_token_configured_turns_the_api_off_with_one_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="idhooks.api")
    d = deployment(tmp_path, extra="")
    result = d.get("/api/v1/events")
    assert result.status_code == 404
    assert result.json["error"] == "not found" and "api.tokens" in result.json["detail"]
    lines = [r.getMessage() for r in caplog.records if "api.tokens" in r.getMessage()]
    assert len(lines) == 1 and "the API and console are off" in lines[0]
    d.service.store.close()


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer wrong-token", "Basic " + VIEWER_TOKEN,
                                    "Bearer " + VIEWER_TOKEN + "x", "Bearer " + "A" * 100_000])
def test_requests_without_a_valid_token_get_401(api, header):
    result = api.client.simulate_get("/api/v1/events", headers={"Authorization": header} if header else {})
    assert result.status_code == 401
    assert result.json["error"] == "unauthorized"
    assert result.headers["WWW-Authenticate"].startswith("Bearer")


def test_tokens_never_appear_in_logs_or_answers(api, caplog):
    caplog.set_level(logging.DEBUG)
    api.send(login_event("jane@example.com"))
    for token in (VIEWER_TOKEN, OPERATOR_TOKEN, "wrong-" + VIEWER_TOKEN):
        text = api.get("/api/v1/events", token=token).text + api.get("/api/v1/rules", token=token).text
        assert VIEWER_TOKEN not in text and OPERATOR_TOKEN not in text
    assert VIEWER_TOKEN not in caplog.text and OPERATOR_TOKEN not in caplog.text
    assert VIEWER_TOKEN not in repr(api.service.config.get())


def test_events_filter_by_user_type_ip_and_status_and_combine(api):
    jane = api.send(login_event("jane@example.com", ip="10.0.0.5", user_id="u-jane"))
    bob = api.send(login_event("bob@example.com", ip="198.51.100.7"))
    created = api.send(sample_event("user.userCreated"))

    def jtis(query: str) -> list[str]:
        result = api.get("/api/v1/events", token=OPERATOR_TOKEN, query_string=query)
        assert result.status_code == 200, result.text
        return [item["jti"] for item in result.json["items"]]

    assert jtis("") == [created, bob, jane]  # newest first
    assert jtis("user=JANE@example.com") == [jane]
    assert jtis("user=u-jane") == [jane]
    assert jtis("type=login.loginFailed") == [bob, jane]
    assert jtis("type=login.*") == [bob, jane]
    assert jtis("type=user.userCreated") == [created]
    assert jtis("ip=198.51.100.7") == [bob]
    assert jtis("ip=198.51.100.7&user=jane@example.com") == []
    assert jtis("status=processed&type=login.loginFailed") == [bob, jane]
    assert jtis(f"jti={jane}") == [jane]
    assert jtis("since=1h") == [created, bob, jane]
    assert jtis("until=2000-01-01T00:00:00Z") == []
    item = api.get("/api/v1/events", token=OPERATOR_TOKEN, query_string=f"jti={jane}").json["items"][0]
    assert item["matched"] == ["failed-login-alert", "internal-logins"]
    assert item["username"] == "jane@example.com" and item["ip"] == "10.0.0.5"


def test_cursor_pagination_visits_every_event_once(api):
    sent = [api.send(login_event(f"user{i}@example.com")) for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = api.get("/api/v1/events", query_string=query).json
        seen += [item["jti"] for item in page["items"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(sent)) and pages == 3


@pytest.mark.parametrize("query", ["cursor=not-a-cursor", "cursor=W10", "cursor=" + "A" * 5000, "cursor=WzEsMl0",
                                   "cursor=WyJOYU4iLCJ4Il0", "limit=0", "limit=-1", "limit=abc", "limit=1e3",
                                   "limit=%EF%BC%95", "since=yesterday", "since=nan", "until=1e400", "status=gone",
                                   "status=processed&status=stale", "user=" + "x" * 5000, "type=%00",
                                   "ip=a%0D%0Ab"])
def test_bad_parameters_are_422_with_a_reason(api, query):
    result = api.get("/api/v1/events", query_string=query)
    assert result.status_code == 422, result.text
    assert result.json["error"] == "invalid input" and result.json["detail"]


@pytest.mark.parametrize("query", ["user=%ED%A0%80", "type=%FF%FE", "jti=%C0%AF", "since=%E2%80%AE1h"])
def test_undecodable_bytes_in_a_parameter_never_cause_a_server_error(api, query):
    assert api.get("/api/v1/events", query_string=query).status_code in (200, 422)


def test_a_huge_limit_is_bounded(api):
    api.send(login_event("jane@example.com"))
    result = api.get("/api/v1/events", query_string="limit=" + "9" * 200)
    assert result.status_code == 200 and len(result.json["items"]) == 1


def test_markup_in_a_filter_is_data(api):
    api.send(login_event(XSS_NAME))
    result = api.get("/api/v1/events", token=OPERATOR_TOKEN, query_string="user=" + XSS_NAME.replace("<", "%3C"))
    assert [i["username"] for i in result.json["items"]] == [XSS_NAME]
    assert result.headers["content-type"].startswith("application/json")


def test_event_detail_has_envelope_body_decisions_and_jobs(api):
    jti = api.send(login_event("jane@example.com", ip="10.1.2.3"))
    detail = api.get(f"/api/v1/events/{jti}", token=OPERATOR_TOKEN).json
    assert detail["envelope"]["iss"] == "https://api.asgardeo.io/t/acme"
    body = next(iter(detail["body"].values()))
    assert body["initiatorIpAddress"] == "10.1.2.3"
    decisions = {d["rule"]: d for d in detail["decisions"]}
    assert decisions["failed-login-alert"]["actions"][0]["fields"]["message"] == \
        "failed login for jane@example.com from 10.1.2.3"
    assert [j["rule"] for j in detail["jobs"]] == ["failed-login-alert", "internal-logins"]
    assert all(j["jti"] == jti and j["id"] for j in detail["jobs"])


def test_a_missed_rule_shows_its_first_failed_condition(api):
    jti = api.send(login_event("jane@example.com", ip="198.51.100.23"))
    decisions = {d["rule"]: d for d in api.get(f"/api/v1/events/{jti}").json["decisions"]}
    assert decisions["internal-logins"]["matched"] is False
    assert "initiatorIpAddress" in decisions["internal-logins"]["failed"]
    assert decisions["internal-logins"]["actual"] == "198.51.100.23"


def test_viewers_see_masked_pii_everywhere_operators_see_it_plain(api):
    jti = api.send(login_event("jane.doe@example.com"))
    viewer = api.get(f"/api/v1/events/{jti}").text
    assert "jane.doe@example.com" not in viewer and "j***@example.com" in viewer
    listing = api.get("/api/v1/events", query_string="user=jane.doe@example.com").text
    assert "jane.doe@example.com" not in listing and "j***@example.com" in listing
    timeline = api.get("/api/v1/users/jane.doe@example.com/timeline").text
    assert "jane.doe@example.com" not in timeline
    assert "jane.doe@example.com" in api.get(f"/api/v1/events/{jti}", token=OPERATOR_TOKEN).text


@pytest.mark.parametrize("path", ["/api/v1/events/..%2F..%2Fetc%2Fpasswd", "/api/v1/events/%2e%2e",
                                  "/api/v1/events/nope", "/api/v1/events/" + "x" * 300,
                                  "/api/v1/events/%3Cscript%3E", "/api/v1/nothing-here",
                                  "/api/v1/users/nobody/timeline/extra"])
def test_unknown_ids_and_path_tricks_are_404_or_422(api, path):
    result = api.get(path)
    assert result.status_code in (404, 422), result.text
    assert set(result.json) == {"error", "detail"}


def test_a_lone_surrogate_in_a_path_id_is_422(api):
    assert api.get("/api/v1/events/%ED%A0%80").status_code in (404, 422)
    assert api.post("/api/v1/deadletters/%ED%A0%80/retry").status_code in (404, 422)


def test_timeline_is_oldest_first_by_username_or_user_id(api):
    first = api.send(login_event("jane@example.com", user_id="u-1"))
    api.send(login_event("bob@example.com"))
    second = api.send(login_event("jane@example.com", user_id="u-1", alias="login.loginSuccess"))
    by_name = api.get("/api/v1/users/jane@example.com/timeline", token=OPERATOR_TOKEN).json
    assert [i["jti"] for i in by_name["items"]] == [first, second] and by_name["next"] is None
    by_id = api.get("/api/v1/users/u-1/timeline", token=OPERATOR_TOKEN).json
    assert [i["jti"] for i in by_id["items"]] == [first, second]
    assert api.get("/api/v1/users/jane@example.com/timeline", query_string="since=bad").status_code == 422


def test_deliveries_list_filters_and_dead_letters_are_retried_and_dropped_by_operators(api):
    dead = api.dead_letter("target")
    api.send(login_event("jane@example.com"))
    all_jobs = api.get("/api/v1/deliveries").json["items"]
    assert dead in [j["id"] for j in all_jobs] and len(all_jobs) == 2
    dead_items = api.get("/api/v1/deliveries", query_string="status=dead").json["items"]
    assert [(j["id"], j["last_error"]) for j in dead_items] == [(dead, "HTTP 500 from the target")]
    assert [j["id"] for j in api.get("/api/v1/deliveries", query_string="destination=target").json["items"]] == [dead]

    refused = api.post(f"/api/v1/deadletters/{dead}/retry", token=VIEWER_TOKEN)
    assert refused.status_code == 403 and "viewer" in refused.json["detail"]
    assert api.service.store.get_job(dead).status == "dead"
    assert api.post(f"/api/v1/deadletters/{dead}/retry").json == {"id": dead, "status": "pending"}
    assert api.service.store.get_job(dead).status == "pending"
    assert api.post(f"/api/v1/deadletters/{dead}/retry").status_code == 404  # not dead any more
    assert api.post("/api/v1/deadletters/nope/drop").status_code == 404
    second = api.dead_letter("other")
    assert api.post(f"/api/v1/deadletters/{second}/drop", token=VIEWER_TOKEN).status_code == 403
    assert api.post(f"/api/v1/deadletters/{second}/drop").json == {"id": second, "status": "dropped"}
    assert api.service.store.get_job(second) is None
    assert api.get("/api/v1/deliveries", query_string="status=done").status_code == 422


def test_deliveries_page_with_a_cursor(api):
    ids = [api.dead_letter(f"d{i}") for i in range(5)]
    first = api.get("/api/v1/deliveries", query_string="limit=2").json
    second = api.get("/api/v1/deliveries", query_string=f"limit=2&cursor={first['next']}").json
    third = api.get("/api/v1/deliveries", query_string=f"limit=2&cursor={second['next']}").json
    listed = [j["id"] for page in (first, second, third) for j in page["items"]]
    assert sorted(listed) == sorted(ids) and third["next"] is None


def test_quarantine_list_reverify_and_drop(api, tmp_path):
    refused = sample_event()
    body, headers = signed(refused, secret="an-old-secret")
    assert api.client.simulate_post("/webhooks/asgardeo", body=body, headers=headers).status_code == 401
    items = api.get("/api/v1/quarantine").json["items"]
    assert len(items) == 1 and "signature" in items[0]["reason"]
    entry = items[0]["id"]
    assert api.post(f"/api/v1/quarantine/{entry}/reverify", token=VIEWER_TOKEN).status_code == 403
    still = api.post(f"/api/v1/quarantine/{entry}/reverify").json
    assert still["ingested"] is False and "still refused" in still["message"]
    (tmp_path / "secret").write_text("an-old-secret")
    assert api.service.reload()
    done = api.post(f"/api/v1/quarantine/{entry}/reverify").json
    assert done == {"id": entry, "ingested": True, "jti": refused["jti"],
                    "message": f"verified, event {refused['jti']} accepted"}
    assert api.service.store.get_event(refused["jti"]) is not None
    assert api.post(f"/api/v1/quarantine/{entry}/drop").status_code == 404


def test_subscriptions_and_rules(api):
    verify = api.client.simulate_get("/webhooks/asgardeo", params={
        "hub.mode": "subscribe", "hub.topic": "acme.x.schema.wso2.v1.event.login", "hub.challenge": "c",
        "hub.lease_seconds": "3600"})
    assert verify.status_code == 200
    subs = api.get("/api/v1/subscriptions").json
    assert [s["mode"] for s in subs["items"]] == ["subscribe"]
    assert subs["webhooks"][0]["webhook"] == "asgardeo" and subs["webhooks"][0]["lease_expires_at"] > time.time()
    rules = api.get("/api/v1/rules").json
    assert [r["id"] for r in rules["items"]] == ["failed-login-alert", "internal-logins"]
    assert rules["items"][0]["source"].endswith("logins.yaml:3") and rules["items"][0]["kind"] == "match"
    assert rules["last_reload_error"] is None


def test_rules_test_answers_exactly_what_idhooks_test_json_prints(api, tmp_path, capsys):
    event = login_event("jane@example.com", ip="10.0.0.1")
    (tmp_path / "event.json").write_text(json.dumps(event))
    assert main(["test", str(tmp_path / "event.json"), "--config", str(tmp_path / "config.yaml"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    answered = api.post("/api/v1/rules/test", token=VIEWER_TOKEN, body={"event": event})
    assert answered.status_code == 200, answered.text
    results = answered.json
    assert [r.pop("file") for r in results] == ["event"]
    assert results == [{k: v for k, v in r.items() if k != "file"} for r in printed]
    assert api.get("/api/v1/events").json["items"] == []  # nothing stored


def test_rules_test_with_a_catalog_event_and_pasted_rules(api):
    rules = "rules:\n  - id: try-me\n    event: login.loginFailed\n    actions:\n      - log: {message: 'hi {{ username }}'}\n"
    result = api.post("/api/v1/rules/test", body={"catalog": "login.loginFailed", "rules": rules}).json
    assert result[0]["type"] == "login.loginFailed"
    assert result[0]["decisions"] == [{"rule": "try-me", "matched": True, "actions": [
        {"index": 0, "type": "log", "destination": None, "fields": {"message": "hi jane.doe@example.com"}}]}]
    assert api.service.store.list_jobs(None, 10) == []


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)) + "rules: [*i]\n"


@pytest.mark.parametrize("body, expected", [
    ({"catalog": "login.loginFailedd"}, "did you mean 'login.loginFailed'"),
    ({"catalog": "login.loginFailed", "event": {}}, "exactly one"),
    ({}, "exactly one"),
    ({"event": {"jti": "x"}}, "iat"),
    ({"event": [1, 2]}, "JSON object"),
    ({"catalog": "login.loginFailed", "rules": "rules: [\n"}, "invalid YAML"),
    ({"catalog": "login.loginFailed", "rules": "rules:\n  - id: x\n    event: login.nope\n    actions: []\n"},
     "playground.yaml:"),
    ({"catalog": "login.loginFailed", "rules": ALIAS_BOMB}, "playground.yaml:"),
    ({"catalog": "login.loginFailed", "rules": "#" * 70_000}, "longer than"),
    ({"catalog": "login.loginFailed", "rules": 5}, "as a string"),
    ({"catalog": "login.loginFailed", "extra": 1}, "unknown field"),
    ({"catalog": "login.loginFailed", "webhook": "<b>nope</b>"}, "no webhook named"),
    ({"catalog": "login.loginFailed\ud800"}, "UTF-8"),
])
def test_rules_test_refuses_bad_input_quickly(api, body, expected):
    started = time.monotonic()
    result = api.post("/api/v1/rules/test", body=json.dumps(body))
    assert result.status_code == 422, result.text
    assert expected in result.json["detail"]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"event": NaN}', b'{"event": 1e999}', b"[" * 100_000,
                                 b'{"catalog": "\\ud800"}', b"\xff\xfe"])
def test_rules_test_bodies_that_are_not_json_objects_are_422(api, raw):
    result = api.post("/api/v1/rules/test", body=raw)
    assert result.status_code == 422, result.text


def test_rules_test_body_is_bounded(api):
    result = api.post("/api/v1/rules/test", body=b'{"rules": "' + b"a" * 3_000_000 + b'"}')
    assert result.status_code == 413 and result.json["error"] == "too large"


def test_method_not_allowed_is_json_too(api):
    result = api.client.simulate_delete("/api/v1/events", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert result.status_code == 405 and set(result.json) == {"error", "detail"}


def test_api_listen_serves_the_api_and_console_only_on_their_own_address(tmp_path):
    import falcon.testing

    from engine.api.app import create_api_app

    d = deployment(tmp_path, extra=API_CONFIG_WITH_LISTEN)
    assert d.service.config.get().api.listen == ("127.0.0.1", 8081)
    assert d.get("/api/v1/events").status_code == 404  # the main port: the webhook sink's 404
    assert d.client.simulate_get("/console/login").status_code == 404
    own = falcon.testing.TestClient(create_api_app(d.service.api))
    assert own.simulate_get("/api/v1/events", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}).status_code == 200
    assert own.simulate_get("/console/login").status_code == 200
    d.service.store.close()


@pytest.mark.parametrize("api_yaml, expected", [
    ("api: {tokens: [{name: a, role: viewer}]}", "give token_file: PATH or token: ${ENV_VAR}"),
    ("api: {tokens: [{name: a, token: x, role: admin}]}", "expected viewer or operator"),
    ("api: {tokens: [{name: A B, token: x}]}", "expected a name of lowercase letters"),
    ("api: {tokens: [{name: a, token: x}, {name: a, token: y}]}", "two tokens are named 'a'"),
    ("api: {tokens: [{name: a, token: '  '}]}", "the token is empty"),
    ("api: {tokens: [{name: a, token_file: missing-file}]}", "cannot read"),
    ("api: {tokens: [{name: a, token: x, token_file: f}]}", "give token or token_file, not both"),
    ("api: {mask: claims.emailaddress}", "expected a list of field paths"),
    ("api: {listen: nowhere}", "expected HOST:PORT"),
    ("api: {tokenz: []}", "did you mean 'tokens'"),
])
def test_bad_api_config_is_a_clear_error(tmp_path, api_yaml, expected):
    from engine.config.settings import load_config
    from engine.errors import ConfigError
    from tests.conftest import basic_config

    with pytest.raises(ConfigError) as err:
        load_config(basic_config(tmp_path, extra=api_yaml))
    assert expected in str(err.value)
