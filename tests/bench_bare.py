"""A bare FastAPI endpoint with capture's request model, and nothing else: the ceiling `make bench` holds
capture's request rate against (same machine, same client, same run)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from capture.domain import Submission

app = FastAPI()


@app.post("/v1/leads", status_code=202)
async def post_lead(submission: Submission) -> JSONResponse:
    return JSONResponse({"lead_id": str(uuid.uuid4()), "status": "accepted", "captured_at": datetime.now(UTC)
                         .isoformat(), "form_id": None, "existing": False}, status_code=202)
