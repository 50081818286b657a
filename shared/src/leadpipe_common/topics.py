"""Topic names and the layout every environment gets.

Guarantees: every event of one lead is keyed by its lead id, so it lands on
one partition and stays in order. ``DEFAULT_PARTITIONS`` is the ceiling on
parallelism per stage; it is deliberately larger than any replica count we
expect so scaling out never needs a repartition.
"""

from __future__ import annotations

CAPTURED = "leads.captured"
ENRICHED = "leads.enriched"
SCORED = "leads.scored"
ROUTED = "leads.routed"
LIFECYCLE = "leads.lifecycle"
DEADLETTER = "leads.deadletter"
#: Sales tools' dispositions (``lead.dispositioned``), the alternative to routing's HTTP API.
FEEDBACK = "leads.feedback"
#: Submissions capture took for bots' (``lead.quarantined``): never on ``leads.captured`` unless released.
QUARANTINED = "leads.quarantined"

DEFAULT_PARTITIONS = 12
# Who reads and writes each topic, what it carries and how long it is kept:
# ``leadpipe_common.topology``.
