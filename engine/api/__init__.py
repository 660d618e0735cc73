"""The JSON API under /api/v1 (engine/api/app.py) and its OpenAPI 3.1 document (engine/api/openapi.py)."""
