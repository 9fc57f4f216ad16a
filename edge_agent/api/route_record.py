"""The routing record of one request: its ``agl.route`` span and its latest decision.

The span lasts until the decision is final (a failed escalation or a cascade included), so it
carries the final tier and reason, plus the first choice when that changed. An error after the
decision is answered with the headers of the path the request really took.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Span

from edge_agent.api.state import AgentState
from edge_agent.api.tracing import note_decision
from edge_agent.errors import ApiError
from edge_agent.router.decide import RouteDecision
from shared.reasons import RouteReason, Tier

__all__ = ["RouteRecord"]


class RouteRecord:
    """The routing of one request: its span, its latest decision, and the settling of it.

    The ``agl.route`` span lasts until the decision is final (a failed escalation or a cascade
    included), so it carries the final tier and reason, plus the first choice when that changed.
    """

    def __init__(self, state: AgentState, span: Span) -> None:
        self.state = state
        self.span = span
        self.decision: RouteDecision = RouteDecision(tier=Tier.EDGE, reason=RouteReason.DEFAULT)
        self._settled = False

    def settle(self, decision: RouteDecision) -> None:
        """The final decision: on both spans and counted, once per request."""
        self.decision = decision
        if self._settled:
            return
        self._settled = True
        note_decision(self.span, decision)
        note_decision(trace.get_current_span(), decision)
        self.state.record_decision(decision)
        self.span.end()

    def refuse(self, error: ApiError) -> ApiError:
        """``error``, answered with the headers of the path the request really took."""
        error.headers = {**self.decision.headers(), **error.headers}
        return error

    def close(self) -> None:
        """End the span if the request failed before its decision was final."""
        if not self._settled:
            note_decision(self.span, self.decision)
            self.span.end()
