"""The web console under /console: server-rendered Jinja2 pages (autoescaped) over the same engine/ops
functions as the API and the CLI; works without JavaScript."""
