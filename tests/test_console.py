"""The console in-process: login and its cookie, CSRF on every state-changing form, viewers without
operator buttons (and 403 if they post anyway), escaping of event values, the playground, hostile fields."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from engine.console import session as sessions
from tests.api_support import RULE, OPERATOR_TOKEN, VIEWER_TOKEN, XSS_NAME, Deployment, deployment, login_event

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def console(tmp_path: Path) -> Deployment:
    d = deployment(tmp_path)
    yield d
    d.service.store.close()


def log_in(d: Deployment, token: str) -> dict[str, str]:
    result = d.client.simulate_post("/console/login", body=urlencode({"token": token}), headers=FORM)
    assert result.status_code == 303 and result.headers["location"] == "/console"
    return {"Cookie": f"{sessions.COOKIE}={result.cookies[sessions.COOKIE].value}"}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_pages_need_a_session_and_login_sets_a_strict_httponly_cookie(console):
    assert console.client.simulate_get("/console/events").headers["location"] == "/console/login"
    result = console.client.simulate_post("/console/login", body="token=" + OPERATOR_TOKEN, headers=FORM)
    cookie = result.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert OPERATOR_TOKEN not in cookie
    bad = console.client.simulate_post("/console/login", body="token=wrong", headers=FORM)
    assert bad.status_code == 401 and "not one of api.tokens" in bad.text and "set-cookie" not in bad.headers


@pytest.mark.parametrize("cookie", ["", "ops.9999999999.00000000000000000000000000000000." + "0" * 64,
                                    "nobody.9999999999.00000000000000000000000000000000." + "0" * 64,
                                    "<script>", "ops." + "1" * 5000])
def test_forged_or_malformed_cookies_are_no_session(console, cookie):
    result = console.client.simulate_get("/console", headers={"Cookie": f"{sessions.COOKIE}={cookie}"})
    assert result.status_code == 303 and result.headers["location"] == "/console/login"


def test_a_session_ends_when_its_token_changes(console, tmp_path):
    headers = log_in(console, OPERATOR_TOKEN)
    assert console.client.simulate_get("/console", headers=headers).status_code == 200
    (tmp_path / "operator-token").write_text("a-new-operator-token")
    assert console.service.reload()
    assert console.client.simulate_get("/console", headers=headers).status_code == 303


def test_every_page_renders_and_sends_security_headers(console):
    jti = console.send(login_event("jane@example.com"))
    headers = log_in(console, VIEWER_TOKEN)
    for path in ("/console", "/console/events", f"/console/events/{jti}", "/console/users/jane@example.com",
                 "/console/deliveries", "/console/quarantine", "/console/rules", "/console/playground"):
        result = console.client.simulate_get(path, headers=headers)
        assert result.status_code == 200, (path, result.text)
        assert "script-src" not in result.headers["content-security-policy"]  # default-src 'none': no scripts
        assert result.headers["x-content-type-options"] == "nosniff"


def test_an_xss_username_renders_as_text_everywhere(console):
    jti = console.send(login_event(XSS_NAME))
    headers = log_in(console, OPERATOR_TOKEN)
    for path in ("/console/events", f"/console/events/{jti}", "/console/users/" + quote(XSS_NAME, safe=""),
                 "/console/events?user=" + quote(XSS_NAME)):
        html = console.client.simulate_get(path, headers=headers).text
        assert "<img src=x" not in html, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, path


def test_filters_by_user_show_only_that_user(console):
    console.send(login_event("jane@example.com"))
    console.send(login_event("bob@example.com"))
    headers = log_in(console, OPERATOR_TOKEN)
    html = console.client.simulate_get("/console/events?user=bob@example.com", headers=headers).text
    assert "bob@example.com" in html and "jane@example.com" not in html
    bad = console.client.simulate_get("/console/events?limit=abc", headers=headers)
    assert bad.status_code == 422 and "limit" in bad.text


def test_viewers_see_masked_values_and_no_operator_buttons_and_get_403_when_posting(console):
    console.send(login_event("jane.doe@example.com"))
    dead = console.dead_letter()
    headers = log_in(console, VIEWER_TOKEN)
    assert "jane.doe@example.com" not in console.client.simulate_get("/console/events", headers=headers).text
    html = console.client.simulate_get("/console/deliveries?status=dead", headers=headers).text
    assert dead in html and "Retry" not in html and "/retry" not in html
    result = console.client.simulate_post(f"/console/deadletters/{dead}/retry", headers={**headers, **FORM},
                                          body=urlencode({"csrf": csrf_of(html)}))
    assert result.status_code == 403 and "viewer" in result.text
    assert console.service.store.get_job(dead).status == "dead"


def test_operators_retry_with_the_csrf_token_and_not_without(console):
    dead = console.dead_letter()
    headers = log_in(console, OPERATOR_TOKEN)
    html = console.client.simulate_get("/console/deliveries?status=dead", headers=headers).text
    assert f"/console/deadletters/{dead}/retry" in html
    for body in ("", "csrf=", "csrf=" + "0" * 40, "csrf=%ED%A0%80"):
        refused = console.client.simulate_post(f"/console/deadletters/{dead}/retry", headers={**headers, **FORM},
                                               body=body)
        assert refused.status_code in (403, 422) and console.service.store.get_job(dead).status == "dead"
    done = console.client.simulate_post(f"/console/deadletters/{dead}/retry", headers={**headers, **FORM},
                                        body=urlencode({"csrf": csrf_of(html)}))
    assert done.status_code == 303
    assert console.service.store.get_job(dead).status == "pending"
    page = console.client.simulate_get(done.headers["location"], headers=headers).text
    assert "queued for delivery" in page
    missing = console.client.simulate_post("/console/deadletters/nope/drop", headers={**headers, **FORM},
                                           body=urlencode({"csrf": csrf_of(html)}))
    assert missing.status_code == 404


def test_the_playground_evaluates_pasted_rules_and_reports_errors(console):
    headers = {**log_in(console, VIEWER_TOKEN), **FORM}
    csrf = csrf_of(console.client.simulate_get("/console/playground", headers=headers).text)
    rules = "rules:\n  - id: try-me\n    event: login.loginFailed\n    actions:\n      - log: {message: 'hi {{ username }}'}\n"
    result = console.client.simulate_post("/console/playground", headers=headers, body=urlencode(
        {"csrf": csrf, "source": "catalog", "catalog": "login.loginFailed", "event": "", "rules": rules}))
    assert result.status_code == 200 and "try-me" in result.text and "hi jane.doe@example.com" in result.text
    broken = console.client.simulate_post("/console/playground", headers=headers, body=urlencode(
        {"csrf": csrf, "source": "event", "catalog": "", "event": "{not json", "rules": ""}))
    assert broken.status_code == 422 and "not JSON" in broken.text
    no_csrf = console.client.simulate_post("/console/playground", headers=headers, body=urlencode(
        {"source": "catalog", "catalog": "login.loginFailed"}))
    assert no_csrf.status_code == 403


@pytest.mark.parametrize("body, status", [(b"csrf=a&csrf=b", 422), (b"\xff\xfe=1", 422),
                                          (b"rules=" + b"a" * 2_000_000, 413),
                                          ("&".join(f"f{i}=1" for i in range(50)).encode(), 422)])
def test_hostile_forms_are_refused(console, body, status):
    headers = {**log_in(console, OPERATOR_TOKEN), **FORM}
    assert console.client.simulate_post("/console/playground", headers=headers, body=body).status_code == status


def test_the_console_is_off_without_tokens(tmp_path):
    d = deployment(tmp_path, extra="")
    assert d.client.simulate_get("/console/login").status_code == 404
    d.service.store.close()


def test_a_shadow_rule_shows_what_it_would_send(tmp_path):
    shadow = RULE + """  - id: shadow-alert
    mode: shadow
    event: login.loginFailed
    actions:
      - log: {message: "would alert on {{ username }}"}
"""
    d = deployment(tmp_path, rules=shadow)
    jti = d.send(login_event("jane@example.com"))
    html = d.client.simulate_get(f"/console/events/{jti}", headers=log_in(d, OPERATOR_TOKEN)).text
    assert "shadow-alert</strong> matched <em class=\"shadow\">shadow: would send, nothing queued</em>" in html
    assert "would alert on jane@example.com" in html
    assert [j["rule"] for j in d.get(f"/api/v1/events/{jti}", token=OPERATOR_TOKEN).json["jobs"]] == \
        ["failed-login-alert"]
    d.service.store.close()


HOSTILE_VALUES = ["<script>alert(1)</script>", "x" * 5000, "%ED%A0%80", "%00", "a%0D%0Ab", "../../etc/passwd",
                  "9" * 200, "-1", "WyJOYU4iLCJ4Il0"]


@pytest.mark.parametrize("path, names", [
    ("/console/events", ("type", "user", "ip", "jti", "status", "since", "until", "limit", "cursor")),
    ("/console/deliveries", ("status", "destination", "cursor", "done", "id")),
    ("/console/users/someone", ("since", "cursor")),
])
def test_hostile_query_values_never_break_a_page(console, path, names):
    headers = log_in(console, VIEWER_TOKEN)
    for name in names:
        for value in HOSTILE_VALUES:
            result = console.client.simulate_get(path, query_string=f"{name}={value}", headers=headers)
            assert result.status_code in (200, 422), (name, value, result.status_code)
            assert "<script>alert(1)</script>" not in result.text


@pytest.mark.parametrize("token", ["x" * 5000, "%ED%A0%80", "<b>", "%00"])
def test_hostile_login_tokens_are_refused(console, token):
    result = console.client.simulate_post("/console/login", body="token=" + token, headers=FORM)
    assert result.status_code in (401, 422) and "set-cookie" not in result.headers


def test_the_console_address_with_a_trailing_slash_leads_to_the_overview(console):
    assert console.client.simulate_get("/console/").headers["location"] == "/console"
    headers = log_in(console, VIEWER_TOKEN)
    followed = console.client.simulate_get(console.client.simulate_get("/console/").headers["location"],
                                           headers=headers)
    assert followed.status_code == 200
