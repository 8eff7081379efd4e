"""Local fake servers speaking hosted providers' real wire formats, on ephemeral loopback ports.

Each fake has knobs: ``latency`` (before the response), ``fail_status`` (answer with that HTTP status,
``fail_times`` times, then succeed), ``malformed`` (a garbage chunk in the stream), ``chunk_delay`` (a slow
stream) and ``disconnect_after`` (drop the connection mid-stream after that many chunks). Every request is
kept in ``requests`` for the test to inspect.
"""
