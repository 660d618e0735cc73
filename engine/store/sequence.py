"""The sequence of one (rule, group): pure functions over a small JSON-able state, shared by every backend
(each loads the state, calls `offer()` and writes the result back in one atomic step), like window.py.
The rules engine (engine/match/stateful/detect.py) builds the SequenceEvent; this module only keeps count.

Semantics (docs/rules.md, "sequence"):
- Steps complete in order. A step completes when `count` events matched it; the event that completes a
  step does not count for the next one.
- Everything must happen within `within` seconds (event time) of the sequence's first event; an event
  past that drops the old sequence (and may start a new one).
- An event matching an earlier step while the sequence waits for a later one is counted there (so
  `steps[0].count` says how many failures preceded the success) but never resets it; only a `reset_on`
  event drops the group's sequence.
- The rule fires once per completed sequence. The completing event's jti is remembered, so evaluating it
  again after a crash gives the same firing (same firing id, no second alert).
"""

from __future__ import annotations

import copy
from typing import Any

from engine.store.state import (ADVANCED, COMPLETED, DUPLICATE, IGNORED, REPLAYED, RESET, STARTED, SequenceEvent,
                                SequenceLimits, SequenceResult)

ITEMS_KEPT = 10
"""Events each step shows to templates (`steps[i].events`, the newest)."""
JTIS_KEPT = 200
"""Recent jtis of a group's sequence, so a repeated event never counts twice (bounded)."""


State = dict[str, Any]
# {"s": start time | None, "i": step waited for, "c": [[count, first, last, [items]] per step], "j": [jtis],
#  "f": {"jti": completing jti, "result": SequenceResult JSON, "until": when to forget it} | None}


def _fresh() -> State:
    return {"s": None, "i": 0, "c": [], "j": [], "f": None}


def _live(state: State | None, event: SequenceEvent, limits: SequenceLimits) -> State:
    state = copy.deepcopy(state) if state else _fresh()
    if state["s"] is not None and event.time > state["s"] + limits.within:
        state.update(s=None, i=0, c=[], j=[])
    if state["f"] is not None and event.time > state["f"]["until"]:
        state["f"] = None
    return state


def _count(state: State, index: int, event: SequenceEvent) -> None:
    step = state["c"][index]
    step[0] += 1
    step[1] = event.time if step[1] is None else min(step[1], event.time)
    step[2] = event.time if step[2] is None else max(step[2], event.time)
    step[3] = (step[3] + [event.item])[-ITEMS_KEPT:]


def _start(state: State, event: SequenceEvent, limits: SequenceLimits) -> None:
    state.update(s=event.time, i=0, c=[[0, None, None, []] for _ in limits.counts], j=[])


def offer(state: State | None, event: SequenceEvent, limits: SequenceLimits) -> tuple[State | None, SequenceResult]:
    """Offer one matching event to a group's sequence; (new state or None when nothing is left, result)."""
    state = _live(state, event, limits)
    fired = state["f"]
    if fired is not None and fired["jti"] == event.jti:
        return state, SequenceResult(**{**fired["result"], "status": REPLAYED})
    if event.jti in state["j"]:
        return state, SequenceResult(DUPLICATE, state["i"])
    status = IGNORED
    if event.reset and state["s"] is not None:
        state.update(s=None, i=0, c=[], j=[])
        status = RESET
    if state["s"] is None:
        if 0 not in event.matches:
            return _kept(state), SequenceResult(status, 0)
        _start(state, event, limits)
        status = STARTED
    waiting = state["i"]
    if waiting in event.matches:
        _count(state, waiting, event)
        if state["c"][waiting][0] >= limits.counts[waiting]:
            state["i"] += 1
        status = status if status == STARTED else ADVANCED
    elif any(index < waiting for index in event.matches):
        _count(state, max(index for index in event.matches if index < waiting), event)
        status = ADVANCED
    else:
        return _kept(state), SequenceResult(status, waiting)
    state["j"] = (state["j"] + [event.jti])[-JTIS_KEPT:]
    if state["i"] < len(limits.counts):
        return state, SequenceResult(status, state["i"])
    return _complete(state, event, limits)


def _complete(state: State, event: SequenceEvent, limits: SequenceLimits) -> tuple[State, SequenceResult]:
    steps = [{"count": c[0], "first": c[1], "last": c[2], "events": c[3]} for c in state["c"]]
    result = SequenceResult(COMPLETED, len(limits.counts), state["s"], steps)
    state.update(s=None, i=0, c=[], j=[], f={"jti": event.jti, "result": result.to_json(),
                                            "until": event.time + limits.within})
    return state, result


def _kept(state: State) -> State | None:
    return state if state["s"] is not None or state["f"] is not None else None


def expires_at(state: State, limits: SequenceLimits) -> float:
    """When the state can be deleted: its sequence timed out and its last firing need not be replayed."""
    ends = [state["s"] + limits.within] if state["s"] is not None else []
    ends += [state["f"]["until"]] if state["f"] is not None else []
    return max(ends)
