"""The routing decision: pure, no I/O, one function.

``decide(inp, cfg)`` walks these steps and stops at the first that applies:

1. a plugin asked for ``local_only``, or any matching rule's tier is ``local_only``
   → edge, ``local_only`` (wins over everything, a cloud tier header included);
2. an ``x-agl-tier`` header (``edge`` or ``cloud``) → that tier, ``policy``;
3. the requested model is one of ``cloud_aliases`` → cloud, ``policy``;
4. the request needs a capability (``needs``) that the local model lacks or that ``local_weak``
   lists → cloud on a hub model that has it (``capable_cloud_model``), ``capability``; with no
   such model reachable the decision carries ``unmet`` and the caller refuses it (a 400);
   then a plugin asked for ``edge`` or ``cloud`` → that tier, ``policy``;
5. the first matching rule → its tier, ``policy``;
6. ``load_slo_s`` is set and the expected local queue wait exceeds it → cloud, ``load``;
7. the cascade is enabled → edge with ``cascade=True``, ``default`` (the caller judges the local
   answer and, if it escalates, reports ``confidence``);
8. otherwise → edge, ``default``.

Then two facts about this moment can change the choice:

- the prompt does not fit the local context (``fits_locally`` is false) and the choice was the
  edge (but not ``local_only``) → cloud, ``local_error``;
- the cloud is unavailable (no hub link, open circuit, spent budget) → a cloud choice becomes
  edge with ``fallback``, and a cascade is switched off since it could not escalate.

``local_only`` never turns into cloud. When an escalation fails before any token reached the
client, :func:`fallback` gives the decision that replaces it (edge, ``fallback``). Every decision
keeps the router's first choice in ``first_tier``/``first_reason``, so a trace shows both.

    decision = decide(RouteInput(prompt_tokens=42, model="smollm2"), RouterConfig())
    assert (decision.tier, decision.reason) == (Tier.EDGE, RouteReason.DEFAULT)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edge_agent.router.policy import PolicyRule, RouterConfig, RouteTarget
from shared.reasons import RouteReason, Tier

__all__ = [
    "RouteDecision",
    "RouteInput",
    "cloud_model_for",
    "decide",
    "fallback",
    "parse_tier_header",
]


@dataclass(frozen=True, kw_only=True)
class RouteInput:
    """What the router knows about one request when it decides."""

    prompt_tokens: int
    """Tokens in the prompt (after the chat template)."""
    model: str
    """The ``model`` the client asked for (a local name or a cloud alias)."""
    tier_header: str | None = None
    """The raw ``x-agl-tier`` header, if any; matched case-insensitively."""
    plugin_route: RouteTarget | None = None
    """What an ``on_request`` plugin returned with ``route(...)``, if any."""
    expected_wait_s: float = 0.0
    """Expected time in the local queue before this request starts."""
    cloud_available: bool = True
    """False when there is no hub link, the circuit is open or the cloud budget is spent."""
    fits_locally: bool = True
    """False when the prompt plus ``max_tokens`` (or one token) exceeds the local context."""
    needs: frozenset[str] = frozenset()
    """Capabilities the request needs (``tools``, ``json_schema``, ``logprobs``)."""
    local_capabilities: frozenset[str] | None = None
    """What the local model can do (None: everything)."""
    capable_cloud_model: str | None = None
    """A reachable hub model that has every capability in ``needs`` (None: none known)."""


@dataclass(frozen=True, kw_only=True)
class RouteDecision:
    """Where a request goes and why; the tier and reason become the ``x-agl-*`` headers."""

    tier: Tier
    reason: RouteReason
    cascade: bool = False
    """Generate locally, then judge the answer's confidence and maybe escalate."""
    cloud_model: str | None = None
    """Hub model to use if the request goes (or is later escalated) to the cloud; None if it must not."""
    rule: str | None = None
    """Name of the policy rule that decided, if one did."""
    detail: str = ""
    """One human-readable line for logs and traces."""
    first_tier: Tier | None = None
    """The router's first choice of tier, when a later fact changed it (else None)."""
    first_reason: RouteReason | None = None
    """The reason of that first choice (else None)."""
    unmet: tuple[str, ...] = ()
    """Capabilities the request needs that no reachable model here may serve: refuse it."""
    needs: tuple[str, ...] = ()
    """A ``capability`` decision: the capabilities it was made for."""

    def headers(self) -> dict[str, str]:
        """The response headers that report this decision."""
        return {"x-agl-tier": self.tier.value, "x-agl-reason": self.reason.value}


def parse_tier_header(raw: str | None) -> Tier | None:
    """Read an ``x-agl-tier`` header value; raise ``ValueError`` for anything but edge or cloud."""
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    try:
        return Tier(value)
    except ValueError:
        raise ValueError(
            f"x-agl-tier must be 'edge' or 'cloud', not {raw!r}; drop the header to let the router decide"
        ) from None


def _header_or_none(raw: str | None) -> Tier | None:
    try:
        return parse_tier_header(raw)
    except ValueError:
        return None


def cloud_model_for(model: str, cfg: RouterConfig) -> str:
    """The hub model that answers a request for ``model``: its alias target, else the default."""
    return cfg.cloud_aliases.get(model, cfg.default_cloud_model)


def decide(inp: RouteInput, cfg: RouterConfig) -> RouteDecision:
    """Pick the tier and reason for one request; the steps are in the module docstring."""
    header = _header_or_none(inp.tier_header)
    matching = [
        rule
        for rule in cfg.rules
        if rule.matches(
            prompt_tokens=inp.prompt_tokens,
            model=inp.model,
            tier_header=header.value if header else None,
            plugin_route=inp.plugin_route,
        )
    ]

    local = inp.local_capabilities
    lacking = () if local is None else tuple(sorted(inp.needs - local))
    # Step 1 runs before the header so that a PII plugin cannot be overridden by a client.
    if inp.plugin_route == "local_only":
        return RouteDecision(
            tier=Tier.EDGE,
            reason=RouteReason.LOCAL_ONLY,
            detail="a plugin marked the request local_only",
            unmet=lacking,
        )
    for rule in matching:
        if rule.tier == "local_only":
            return RouteDecision(
                tier=Tier.EDGE,
                reason=RouteReason.LOCAL_ONLY,
                rule=rule.name,
                detail=f"rule {rule.name!r} keeps the request on the device",
                unmet=lacking,
            )

    cloud_model = cloud_model_for(inp.model, cfg)
    if header is Tier.EDGE and lacking:
        return RouteDecision(
            tier=Tier.EDGE, reason=RouteReason.POLICY, detail="x-agl-tier: edge", unmet=lacking
        )
    short = tuple(sorted(set(lacking) | (inp.needs & set(cfg.local_weak))))
    if short and header is None and inp.model not in cfg.cloud_aliases:
        return _capability(inp, short)
    decision = _first_choice(inp, cfg, header, matching, cloud_model)
    decision = _apply_fit(decision, inp)
    return _apply_availability(decision, cloud_available=inp.cloud_available)


def _capability(inp: RouteInput, short: tuple[str, ...]) -> RouteDecision:
    what = ", ".join(short)
    if inp.capable_cloud_model is None or not inp.cloud_available:
        return RouteDecision(
            tier=Tier.EDGE,
            reason=RouteReason.CAPABILITY,
            detail=f"needs {what}; no reachable hub model has it",
            unmet=short,
        )
    return RouteDecision(
        tier=Tier.CLOUD,
        reason=RouteReason.CAPABILITY,
        cloud_model=inp.capable_cloud_model,
        detail=f"needs {what}, which the local model lacks or does poorly",
        needs=short,
    )


def fallback(decision: RouteDecision, why: str) -> RouteDecision:
    """The decision after an escalation failed before any token reached the client.

    The request is answered locally and marked degraded (``fallback``); a decision that was not
    cloud-bound comes back unchanged. A ``capability`` decision cannot fall back: it comes back
    with ``unmet`` set (the local model must not answer it).
    """
    if decision.tier is not Tier.CLOUD:
        return decision
    if decision.reason is RouteReason.CAPABILITY:
        return replace(decision, unmet=decision.needs, detail=f"the hub failed: {why}")
    return _moved(
        decision,
        tier=Tier.EDGE,
        reason=RouteReason.FALLBACK,
        cascade=False,
        detail=f"the hub could not answer ({why}); served locally instead",
    )


def _moved(decision: RouteDecision, **changes: object) -> RouteDecision:
    """``decision`` with ``changes``, remembering the router's first choice."""
    return replace(
        decision,
        first_tier=decision.first_tier or decision.tier,
        first_reason=decision.first_reason or decision.reason,
        **changes,  # type: ignore[arg-type]
    )


def _apply_fit(decision: RouteDecision, inp: RouteInput) -> RouteDecision:
    if inp.fits_locally or decision.tier is not Tier.EDGE or decision.cloud_model is None:
        return decision
    return _moved(
        decision,
        tier=Tier.CLOUD,
        reason=RouteReason.LOCAL_ERROR,
        cascade=False,
        detail=f"the prompt ({inp.prompt_tokens} tokens) does not fit the local context",
    )


def _first_choice(
    inp: RouteInput,
    cfg: RouterConfig,
    header: Tier | None,
    matching: list[PolicyRule],
    cloud_model: str,
) -> RouteDecision:
    if header is not None:
        return RouteDecision(
            tier=header,
            reason=RouteReason.POLICY,
            cloud_model=cloud_model,
            detail=f"x-agl-tier header asked for {header.value}",
        )
    if inp.plugin_route in ("edge", "cloud"):
        return RouteDecision(
            tier=Tier(inp.plugin_route),
            reason=RouteReason.POLICY,
            cloud_model=cloud_model,
            detail=f"a plugin routed the request to {inp.plugin_route}",
        )
    if inp.model in cfg.cloud_aliases:
        return RouteDecision(
            tier=Tier.CLOUD,
            reason=RouteReason.POLICY,
            cloud_model=cloud_model,
            detail=f"model {inp.model!r} is a cloud alias of {cloud_model!r}",
        )
    if matching:  # no local_only rule is left here: step 1 returned for those
        rule = matching[0]
        return RouteDecision(
            tier=Tier(rule.tier),
            reason=RouteReason.POLICY,
            cloud_model=cloud_model,
            rule=rule.name,
            detail=f"rule {rule.name!r} matched",
        )
    if cfg.load_slo_s is not None and inp.expected_wait_s > cfg.load_slo_s:
        return RouteDecision(
            tier=Tier.CLOUD,
            reason=RouteReason.LOAD,
            cloud_model=cloud_model,
            detail=(
                f"expected local wait {inp.expected_wait_s:.3g}s exceeds the "
                f"{cfg.load_slo_s:.3g}s SLO"
            ),
        )
    if cfg.cascade.enabled:
        return RouteDecision(
            tier=Tier.EDGE,
            reason=RouteReason.DEFAULT,
            cascade=True,
            cloud_model=cloud_model,
            detail="cascade: answer locally, escalate if unsure",
        )
    return RouteDecision(
        tier=Tier.EDGE,
        reason=RouteReason.DEFAULT,
        cloud_model=cloud_model,
        detail="no rule matched",
    )


def _apply_availability(decision: RouteDecision, *, cloud_available: bool) -> RouteDecision:
    if cloud_available:
        return decision
    if decision.tier is Tier.CLOUD:
        return _moved(
            decision,
            tier=Tier.EDGE,
            reason=RouteReason.FALLBACK,
            detail=f"cloud unavailable, served locally instead ({decision.reason.value}: {decision.detail})",
        )
    if decision.cascade:
        return replace(
            decision, cascade=False, detail="cloud unavailable, so no cascade: answer locally"
        )
    return decision
