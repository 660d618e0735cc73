"""`idhooks events list [--since 1h]` and `idhooks events show JTI`: stored events with their decision
records: which rules matched (and the actions they queued), and for the other rules of that event type the
condition that failed and the value found there."""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import closing

from engine.cli.commands import add_config_option
from engine.config.settings import load_config
from engine.config.durations import parse_duration
from engine.offline.report import decision_lines, event_type, matched_rules, short, when
from engine.store import open_store
from engine.store.base import EVENT_STATUSES, Store, StoredEvent, capture_ref


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("events", help="list stored events and show their rule decisions",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="events_command", metavar="ACTION")
    sub.required = True
    listing = sub.add_parser("list", help="recent events, newest first, with the rules they matched")
    add_config_option(listing)
    listing.add_argument("--since", type=parse_duration, metavar="DURATION", help="received within, e.g. 1h")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.add_argument("--status", choices=EVENT_STATUSES, help="only events in this state (failed: given up "
                                                                  "after failed evaluations, with the reason)")
    show = sub.add_parser("show", help="one event with its full decision record")
    add_config_option(show)
    show.add_argument("jti", metavar="JTI")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    for action in (listing, show):
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, offline=True)
    with closing(open_store(config.store)) as store:
        return _list(store, args) if args.events_command == "list" else _show(store, args)


def _list(store: Store, args: argparse.Namespace) -> int:
    since = time.time() - args.since if args.since is not None else None
    events = store.list_events(since=since, limit=args.limit, status=args.status)
    if not events:
        print("No" + (f" {args.status}" if args.status else "") + " events stored"
              + (" in that period." if since is not None else "."))
        return 0
    print(f"{'RECEIVED':<21} {'JTI':<38} {'WEBHOOK':<12} {'TYPE':<34} {'STATUS':<10} MATCHED")
    for e in events:
        types = ",".join(event_type(u) for u in e.uris)
        matched = ",".join(matched_rules(e.decisions)) or "-"
        if e.status == "failed":
            matched = short(next((d.get("error") for d in e.decisions or [] if "error" in d), ""), 200)
        print(f"{when(e.received_at):<21} {e.jti:<38} {e.webhook:<12} {types:<34} {e.status:<10} {matched}")
    return 0


def _show(store: Store, args: argparse.Namespace) -> int:
    event = store.get_event(args.jti)
    if event is None:
        print(f"idhooks: no stored event with jti {args.jti!r} (see `idhooks events list`)", file=sys.stderr)
        return 1
    captured = captured_for(store, event)
    if args.json:
        print(json.dumps({**_as_json(event), "captured": captured}, indent=2, ensure_ascii=False, default=str))
        return 0
    print(f"jti:       {event.jti}\nwebhook:   {event.webhook}\nreceived:  {when(event.received_at)}\n"
          f"occurred:  {when(event.iat_ms / 1000)}\ntypes:     {', '.join(event_type(u) for u in event.uris)}\n"
          f"status:    {event.status}" + (f" after {event.attempts} attempts" if event.attempts else ""))
    if event.decisions is None:
        print("decisions: none recorded yet" + (" (stale events are never evaluated)" if event.status == "stale"
                                                 else ""))
    else:
        print("decisions:" if event.decisions else "decisions: no rule handles this event type")
        print("\n".join(decision_lines(event.decisions)))
    for key, values in captured.items():
        shown = ", ".join(f"{name} = {json.dumps(value, ensure_ascii=False)}" for name, value in values.items())
        print(f"captured for ordered_by {key!r}: {shown or 'nothing yet'}")
    return 0


def captured_for(store: Store, event: StoredEvent) -> dict[str, dict]:
    """ordered_by key -> the values captured under it, for every key the event's matched actions name."""
    keys = {str(action.get("fields", {}).get("ordered_by") or "") for decision in event.decisions or []
            for action in decision.get("actions", []) if isinstance(action, dict)} - {""}
    return {key: store.captures(capture_ref(key)) for key in sorted(keys)}


def _as_json(event: StoredEvent) -> dict:
    return {"jti": event.jti, "webhook": event.webhook, "received_at": event.received_at, "iat_ms": event.iat_ms,
            "uris": list(event.uris), "status": event.status, "processed_at": event.processed_at,
            "decisions": event.decisions, "event": json.loads(event.body)}
