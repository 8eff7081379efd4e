"""How long the per-call loops wait when idle (one policy for the whole process).

A loop with nothing to do (a call's audio pump, its transcriber and timer loops, an idle pacer) still waits
with a timeout, so it looks at its flags now and then; stopping a call wakes or kills it anyway. Each wait is
a timer and a few objects, and at hundreds of calls a wait per second each kept tens of thousands of objects
in the garbage collector's young generation (see docs/benchmarks.md, media_capacity fifth round).
"""

from __future__ import annotations

#: seconds an idle loop waits before it looks at its flags again
IDLE_POLL_SECONDS = 5.0
