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

ALL = (CAPTURED, ENRICHED, SCORED, ROUTED, LIFECYCLE, DEADLETTER, FEEDBACK)
#: Topics whose dead letters stall a lead in the pipeline (announced on the lifecycle).
STAGE_INPUTS = (CAPTURED, ENRICHED, SCORED)
DEFAULT_PARTITIONS = 12
