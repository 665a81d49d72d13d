from fastapi import APIRouter, Response

from ..telemetry import exposition

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    """Prometheus metrics in the text format (open, like /healthz: counts and timings only,
    no ids). The README's metrics table says what each one means."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)
