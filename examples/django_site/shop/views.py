"""Blocking views: they enqueue and read jobs with the blocking facade, and return at once."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from mongo_job_scheduler import ValidationError

from .jobs import producer, send_receipt


@require_POST
def place_order(request: HttpRequest) -> HttpResponse:
    order = json.loads(request.body)
    # ... store the order, then send its receipt in the background, once per order:
    job = producer().schedule(send_receipt.name, order, dedupe_key=f"receipt:{order['order']}")
    return JsonResponse({"id": str(job.id)}, status=202)


@require_GET
def job_status(request: HttpRequest, job_id: str) -> HttpResponse:
    try:
        job = producer().get_job(job_id)
    except ValidationError:  # not a job id
        job = None
    if job is None:
        return JsonResponse({"error": "no such job"}, status=404)
    return JsonResponse({"status": job.status.value, "result": job.result, "error": job.last_error})
