"""The sliding window of one (rule, group): pure functions over a small JSON-able state.

Both store backends load a group's state, call `offer()` and write the result back inside one atomic
step, so the counting rules live here once and are tested without a store.

Semantics (documented in docs/rules.md):
- Event time (`iat`) decides the window; an event counts when it arrives at most `late` seconds after its
  event time. A window is any span of `within` seconds (both ends included); an event fires the rule when
  some window containing it holds `count` entries, so out-of-order events count where they belong.
- Entries are keyed by jti (a repeated jti never counts twice) or, with `distinct`, by the distinct value
  (each value counts once, at its newest time).
- A firing consumes its window: its entries are dropped and events at or before its last event are
  ignored afterwards, so the next firing needs `count` new events. The state therefore holds fewer than
  `count` entries per window, and nothing older than `within + late` before now.
"""

from __future__ import annotations

import bisect
import copy
from typing import Any

from engine.store.state import CONSUMED, COUNTED, DUPLICATE, LATE, REPLAYED, Threshold, WindowEntry, WindowResult

ITEMS_KEPT = 20
"""Events a firing shows to templates (the newest of its window)."""

State = dict[str, Any]
# {"e": [[key, jti, time, item|None], ...] sorted by time, "u": end of the last fired window | None,
#  "f": {"jti": trigger jti, "result": WindowResult as JSON} | None}
_KEY, _JTI, _TIME, _ITEM = range(4)


def _live(state: State | None, spec: Threshold, now: float) -> State:
    """A copy of `state` without what no acceptable event can share a window with any more."""
    horizon = now - spec.late - spec.within
    state = copy.deepcopy(state) if state else {"e": [], "u": None, "f": None}
    state["e"] = [e for e in state["e"] if e[_TIME] >= horizon]
    if state["u"] is not None and state["u"] < horizon:
        state["u"] = state["f"] = None
    return state


def _insert(entries: list[list[Any]], entry: WindowEntry, spec: Threshold) -> None:
    key = entry.distinct if spec.distinct else entry.jti
    same = next((e for e in entries if e[_KEY] == key), None)
    if same is None:
        entries.append([key, entry.jti, entry.time, entry.item])
    elif entry.time >= same[_TIME]:
        same[_JTI], same[_TIME], same[_ITEM] = entry.jti, entry.time, entry.item
    entries.sort(key=lambda e: e[_TIME])
    for old in entries[:-ITEMS_KEPT]:
        old[_ITEM] = None


def _best(entries: list[list[Any]], time: float, within: float) -> tuple[int, int]:
    """(start, end) slice of the fullest window of `within` seconds that contains `time`."""
    times = [e[_TIME] for e in entries]
    best = (0, 0)
    for start in range(bisect.bisect_left(times, time - within), bisect.bisect_right(times, time)):
        end = bisect.bisect_right(times, times[start] + within)
        if end - start > best[1] - best[0]:
            best = (start, end)
    return best


def offer(state: State | None, entry: WindowEntry, spec: Threshold, now: float) -> tuple[State | None, WindowResult]:
    """Offer `entry` to a group's window at `now`; (new state or None when nothing is left, result)."""
    state = _live(state, spec, now)
    fired = state["f"]
    if fired and fired["jti"] == entry.jti:
        result = WindowResult(**{**fired["result"], "status": REPLAYED})
    elif entry.time < now - spec.late:
        result = WindowResult(LATE)
    elif state["u"] is not None and entry.time <= state["u"]:
        result = WindowResult(CONSUMED)
    elif any(e[_JTI] == entry.jti for e in state["e"]):
        start, end = _best(state["e"], entry.time, spec.within)
        result = WindowResult(DUPLICATE, count=end - start)
    else:
        result = _count(state, entry, spec)
    return (state if state["e"] or state["u"] is not None else None), result


def _count(state: State, entry: WindowEntry, spec: Threshold) -> WindowResult:
    entries = state["e"]
    _insert(entries, entry, spec)
    start, end = _best(entries, entry.time, spec.within)
    if end - start < spec.count:
        return WindowResult(COUNTED, count=end - start)
    window = entries[start:end]
    result = WindowResult(COUNTED, count=len(window), fired=True, first_seen=window[0][_TIME],
                          last_seen=window[-1][_TIME],
                          items=[e[_ITEM] for e in window if e[_ITEM] is not None][-ITEMS_KEPT:])
    state["u"] = window[-1][_TIME]
    state["e"] = [e for e in entries if e[_TIME] > state["u"]]
    state["f"] = {"jti": entry.jti, "result": result.to_json()}
    return result


def expires_at(state: State, spec: Threshold) -> float:
    """When the state can be deleted: no acceptable event could share a window with it after this."""
    newest: float = max([e[_TIME] for e in state["e"]] + ([state["u"]] if state["u"] is not None else []))
    return newest + spec.within + spec.late
