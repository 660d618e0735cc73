"""Receive: the HTTP app, WebSub verification of intent and event intake (verify, parse, store, acknowledge)."""
