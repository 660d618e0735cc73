"""What an operator can look at and do, as plain functions over a store and a config: listing and showing
events, timelines, deliveries, dead letters, the quarantine, subscriptions and trying rules. The CLI, the JSON
API (engine/api) and the console (engine/console) all call these, so the three never disagree."""
