"""Stored events for people: filtered listings in pages, one event with its decision trace and jobs, and one
user's timeline. `idhooks events`, GET /api/v1/events... and the console's event pages call these."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.catalog import uri_to_alias
from engine.match.context import claim_uri, collect_claims
from engine.ops import cursor
from engine.ops.masking import masked_values, redact
from engine.store.base import EVENT_STATUSES, Job, Store, StoredEvent  # noqa: F401 - EVENT_STATUSES for engine/api

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
SCAN_BUDGET = 5000
"""Events examined per request at most; a filtered listing that finds fewer than `limit` within the budget
returns what it found and a cursor that resumes the scan."""


@dataclass(frozen=True)
class EventQuery:
    """Filters of an event listing; each one given narrows it (they combine with AND)."""

    type: str | None = None  # catalog alias (login.loginFailed), alias prefix (login.*) or event URI
    user: str | None = None  # username (case-insensitive) or user id
    ip: str | None = None
    jti: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None

    def wants(self, event: StoredEvent, facts: "EventFacts") -> bool:
        if self.status is not None and event.status != self.status:
            return False
        if self.type is not None and not any(_type_matches(self.type, uri) for uri in event.uris):
            return False
        if self.user is not None and not facts.about(self.user):
            return False
        return self.ip is None or self.ip in facts.ips


@dataclass
class EventFacts:
    """Who and where an event is about, read from its bodies (one per event URI)."""

    bodies: list[Any] = field(default_factory=list)
    usernames: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, event: StoredEvent) -> "EventFacts":
        facts = cls()
        try:
            envelope = json.loads(event.body)
        except ValueError:  # stored bodies were verified JSON; a hand-edited store is no reason to fail
            return facts
        events = envelope.get("events") if isinstance(envelope, dict) else None
        for body in (events or {}).values() if isinstance(events, dict) else ():
            facts.bodies.append(body)
            if not isinstance(body, dict):
                continue
            _add(facts.usernames, collect_claims(body).get(claim_uri("username")))
            user = body.get("user")
            _add(facts.user_ids, user.get("id") if isinstance(user, dict) else None)
            _add(facts.ips, body.get("initiatorIpAddress"))
        return facts

    def about(self, user: str) -> bool:
        return user.casefold() in (u.casefold() for u in self.usernames) or user in self.user_ids


def _add(values: list[str], value: Any) -> None:
    if isinstance(value, str) and value and value not in values:
        values.append(value)


def _type_matches(wanted: str, uri: str) -> bool:
    alias = uri_to_alias(uri) or ""
    if wanted.endswith(".*"):
        return alias.startswith(wanted[:-1])
    return wanted in (alias, uri)


@dataclass
class Page:
    items: list[dict[str, Any]]
    next: str | None

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "next": self.next}


def summary(event: StoredEvent, facts: EventFacts, mask: tuple[str, ...] = ()) -> dict[str, Any]:
    """One row of an event listing: who, what, where, and which rules matched."""
    item = {"jti": event.jti, "webhook": event.webhook, "received_at": event.received_at,
            "occurred_at": event.iat_ms / 1000, "types": [uri_to_alias(u) or u for u in event.uris],
            "status": event.status, "username": facts.usernames[0] if facts.usernames else None,
            "user_id": facts.user_ids[0] if facts.user_ids else None, "ip": facts.ips[0] if facts.ips else None,
            "matched": [d["rule"] for d in event.decisions or [] if d.get("matched")]}
    return redact(item, masked_values(facts.bodies, mask)) if mask else item


def list_events(store: Store, query: EventQuery, limit: int = DEFAULT_LIMIT, after: str | None = None,
                mask: tuple[str, ...] = ()) -> Page:
    """Events newest first matching `query`, at most `limit`, continuing after cursor `after`."""
    limit = max(1, min(limit, MAX_LIMIT))
    position = cursor.decode(after)
    if query.jti is not None:
        return _one(store, query, mask, position)
    items: list[dict[str, Any]] = []
    scanned = 0
    while True:
        want = min(limit * 4, SCAN_BUDGET - scanned)
        batch = store.events_before(position, query.since, query.until, want)
        for event in batch:
            scanned += 1
            position = (event.received_at, event.jti)
            facts = EventFacts.of(event)
            if query.wants(event, facts):
                items.append(summary(event, facts, mask))
                if len(items) == limit:
                    return Page(items, _more(store, query, position))
        if len(batch) < want:
            return Page(items, None)
        if scanned >= SCAN_BUDGET:  # the budget is spent: the caller resumes from here
            return Page(items, cursor.encode(*position) if position else None)


def _more(store: Store, query: EventQuery, position: tuple[float, str]) -> str | None:
    """A cursor after `position` when another stored event follows it, else None."""
    following = store.events_before(position, query.since, query.until, 1)
    return cursor.encode(*position) if following else None


def _one(store: Store, query: EventQuery, mask: tuple[str, ...], position: tuple[float, str] | None) -> Page:
    event = store.get_event(query.jti or "") if position is None else None
    if event is None:
        return Page([], None)
    facts = EventFacts.of(event)
    in_range = (query.since is None or event.received_at >= query.since) and \
               (query.until is None or event.received_at <= query.until)
    return Page([summary(event, facts, mask)] if in_range and query.wants(event, facts) else [], None)


def job_json(job: Job) -> dict[str, Any]:
    """A delivery job as the API answers it and the console shows it: the fields of `idhooks deliveries --json`
    plus the rule and event that made it; status 'failed' for a pending job with a failed attempt."""
    return {"id": job.id, "key": job.key, "status": _job_status(job), "type": job.action,
            "rule": job.rule or None, "jti": job.jti or None,
            "destination": job.destination, "attempts": job.attempts, "created_at": job.created_at,
            "due_at": job.due_at, "last_error": job.last_error, "last_response": job.last_response}


def _job_status(job: Job) -> str:
    return "failed" if job.status == "pending" and job.attempts > 0 else job.status


def event_detail(store: Store, jti: str, mask: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """One event: envelope claims, bodies, decisions (with the first failed condition of each missed rule)
    and its jobs; None when no such event is stored."""
    event = store.get_event(jti)
    if event is None:
        return None
    facts = EventFacts.of(event)
    try:
        envelope = json.loads(event.body)
    except ValueError:
        envelope = {}
    detail = {**summary(event, facts), "iat_ms": event.iat_ms, "uris": list(event.uris),
              "processed_at": event.processed_at,
              "envelope": {k: v for k, v in envelope.items() if k != "events"} if isinstance(envelope, dict) else {},
              "body": envelope.get("events", {}) if isinstance(envelope, dict) else {},
              "decisions": event.decisions, "jobs": [job_json(j) for j in store.jobs_for_event(jti)]}
    return redact(detail, masked_values(facts.bodies, mask)) if mask else detail


def timeline(store: Store, user: str, since: float | None, limit: int = MAX_LIMIT, after: str | None = None,
             mask: tuple[str, ...] = ()) -> Page:
    """Every stored event about `user` (username or user id), oldest first. A page holds the newest
    `limit` of them; `next` pages further back in time."""
    page = list_events(store, EventQuery(user=user, since=since), limit, after, mask)
    return Page(list(reversed(page.items)), page.next)
