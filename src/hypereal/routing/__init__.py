"""Who serves a request: the plan of routes to try (`plan`), the health of each route
(`health`), and the caller's preferences (`preferences`). Chat and media both plan here."""

from hypereal.routing.health import Health
from hypereal.routing.plan import LOCAL_FALLBACK, Plan, Router, Target, not_configured, stand_in_for
from hypereal.routing.preferences import Preferences

__all__ = ["LOCAL_FALLBACK", "Health", "Plan", "Preferences", "Router", "Target", "not_configured", "stand_in_for"]
