"""After the call: costs (pure), logs, timeline, analytics, SLO and metrics."""
