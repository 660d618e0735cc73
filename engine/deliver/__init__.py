"""Deliver: the delivery worker that claims queued jobs and sends them through actions/, and its retry policy."""
