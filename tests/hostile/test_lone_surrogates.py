"""Issue 12 item 8 (processing side): a lone surrogate that reached a stored event (an old database, from
before intake refused them) is a permanent delivery failure, not 24 h of retries, and never crashes the
commands that show or replay stored events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actions import build_actions
from actions.base import ActionContext
from engine.cli import main
from engine.config.settings import DeliveryConfig
from engine.deliver.worker import DeliveryWorker
from engine.errors import PermanentError
from engine.metrics import Metrics
from engine.runtime import Current
from engine.store.base import IncomingEvent, NewJob
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, sample_event
from tests.peers import SmtpPeer, smtp  # noqa: F401 - fixture
from tests.test_actions_email import RENDERED, mailer

LONE = "jane\ud800"
NOW = 1_800_000_000.0


def test_email_with_a_lone_surrogate_is_a_permanent_failure(smtp: SmtpPeer) -> None:
    for field in ("subject", "text", "html"):
        with pytest.raises(PermanentError, match="cannot encode the message"):
            mailer(smtp.port).send({**RENDERED, field: f"new user {LONE}"}, "k")
    assert smtp.messages == []


def test_the_worker_dead_letters_it_at_the_first_attempt(tmp_path: Path, smtp: SmtpPeer) -> None:
    store = SQLiteStore(tmp_path / "idhooks.db")
    actions = build_actions({"mail": {"type": "email", "host": "127.0.0.1", "port": smtp.port,
                                      "from": "idhooks@example.com", "recipients": ["ops@example.com"]}},
                            ActionContext())
    delivery = DeliveryConfig(workers=1, lease=30, retry_for=86_400, backoff_initial=5, backoff_max=60,
                              per_destination_concurrency=1, shutdown_grace=5)
    store.enqueue_jobs([NewJob("jti:r:0", "mail", "email", {"subject": f"hi {LONE}", "text": "x"}, rule="r",
                               jti="jti", received_at=NOW)], NOW)
    worker = DeliveryWorker(store, Current(actions), delivery, Metrics(), clock=lambda: NOW)
    assert worker.run_once() == 1
    [job] = store.list_jobs()
    assert (job.status, job.attempts) == ("dead", 1)
    assert "cannot encode the message" in job.last_error
    store.close()


@pytest.fixture
def old_database(tmp_path: Path) -> tuple[Path, str]:
    """A store holding an event with a lone surrogate in a claim (written before intake refused them)."""
    config = basic_config(tmp_path, store_url=f"sqlite:///{tmp_path / 'idhooks.db'}")
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules:\n  - id: r\n    event: login.loginFailed\n    when:\n      all:\n"
        "        - {claim: username, matches: '^jane'}\n    actions:\n      - log: {message: '{{ username }}'}\n")
    event = sample_event(user={"id": "u1", "claims": [{"uri": "http://wso2.org/claims/username", "value": LONE}]})
    body = json.dumps(event).encode()  # ensure_ascii: the surrogate is the escape \ud800 in the JSON text
    assert b"\\ud800" in body
    store = SQLiteStore(tmp_path / "idhooks.db")
    store.ingest(IncomingEvent(event["jti"], "asgardeo", event["iat"], event["iat"] / 1000, tuple(event["events"]),
                               body), 3600)
    store.complete_event(event["jti"], [{"rule": "r", "matched": True, "actions": [
        {"index": 0, "type": "log", "destination": None, "fields": {"message": LONE}}]}], [], NOW)
    store.close()
    return config, event["jti"]


@pytest.mark.parametrize("command", [["events", "list"], ["events", "show", "JTI"], ["events", "show", "JTI", "--json"],
                                     ["replay", "--since", "1h"], ["replay", "--since", "1h", "--json"]])
def test_stored_lone_surrogates_never_crash_the_commands(old_database, capsys, command) -> None:
    config, jti = old_database
    argv = [part.replace("JTI", jti) for part in command] + ["--config", str(config)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert jti in out
    if command[0] == "replay":
        assert "\\ud800" in out or "jane" in out
