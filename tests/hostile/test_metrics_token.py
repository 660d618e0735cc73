"""`/metrics` behind a token (issue 12, item 15): `Authorization: Bearer <token>` with the scheme in any case
(RFC 7235), and nothing else."""

from __future__ import annotations

import pytest

from tests.hostile.support import App


@pytest.fixture
def app(tmp_path):
    (tmp_path / "metrics-token").write_text("scrape-token-77\r\n")
    a = App(tmp_path, extra="metrics: {token_file: metrics-token}")
    yield a
    a.store.close()


@pytest.mark.parametrize("header", ["Bearer scrape-token-77", "bearer scrape-token-77", "BEARER scrape-token-77",
                                    "bEaReR  scrape-token-77"])
def test_the_bearer_scheme_is_case_insensitive(app, header):
    assert app.client.simulate_get("/metrics", headers={"Authorization": header}).status_code == 200


@pytest.mark.parametrize("header", ["scrape-token-77", "Basic scrape-token-77", "Bearer", "Bearer ",
                                    "Bearerscrape-token-77", "Bearer scrape-token-77 extra", "Bearer scrape-token-7",
                                    "Bearer scrape-token-77\u00e9", "Token scrape-token-77"])
def test_anything_else_is_refused(app, header):
    result = app.client.simulate_get("/metrics", headers={"Authorization": header})
    assert result.status_code == 401
    assert result.headers["www-authenticate"] == 'Bearer realm="idhooks metrics"'
