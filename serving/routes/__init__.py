"""One router per resource."""

from .dashboard import router as dashboard
from .erasures import router as erasures
from .events import router as events
from .experiments import router as experiments
from .health import router as health
from .items import router as items
from .metrics import router as metrics
from .prometheus import router as prometheus
from .sessions import router as sessions
from .trending import router as trending
from .users import router as users

__all__ = ["dashboard", "erasures", "events", "experiments", "health", "items", "metrics",
           "prometheus", "sessions", "trending", "users"]
