"""Offline tools: rule unit tests, decision reports, time-sequence rule tests and the hub simulator.
Nothing here runs inside `idhooks serve`."""
