"""Stateful rules (issue 5): thresholds over time windows, distinct counts, suppression and digests.

    specs.py    the YAML keys `threshold`, `suppress`, `digest`, parsed and checked at load
    state.py    the StateStore protocol (implemented in engine/store/state_sqlite.py and state_redis.py)
    window.py   the sliding-window counting, pure, shared by every backend
    decide.py   evaluate() for a matching event, fire_due_digests() for the periodic tick
"""
