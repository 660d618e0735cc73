"""Config: config.yaml and rule YAML read into typed, frozen values; durations; store URL schemes."""
