"""A fleet scenario: sites, traffic, the simulated model, the hub, the fault schedule, the checks.

    scenario = load_scenario("smoke")                 # a shipped one, by name
    scenario = load_scenario(Path("my-fleet.toml"))   # or a file

Every table refuses unknown keys, and a bad file is a :class:`ScenarioError` that names the field
and says what to fix. ``[edge]`` is passed to the real edge settings (its ``router`` table is the
agent's ``[router]``), so a policy tried here is the policy a device runs.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from openautoglm.sim.errors import ScenarioError

__all__ = [
    "Arrivals",
    "Batches",
    "Expect",
    "Fault",
    "FaultKind",
    "HubSpec",
    "LocalModel",
    "PromptClass",
    "Scenario",
    "Site",
    "Traffic",
    "load_scenario",
    "scenario_names",
]

FaultKind = Literal[
    "kill_worker",
    "add_worker",
    "restart_nats",
    "partition_site",
    "slow_hub",
    "collector_down",
    "clock_jump",
    "plugin_rollout",
]
#: Faults that last ``duration_s`` and are healed afterwards.
WINDOWED: frozenset[str] = frozenset({"partition_site", "slow_hub", "collector_down"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Site(_Strict):
    """A site: its devices share one NATS leaf node (when ``hub.leaf_nodes``)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$", description="Site name.")
    devices: int = Field(
        ge=1,
        le=2000,
        description="Simulated devices at this site (1 to 2000). Every site's devices run in "
        "the simulator's one process; see Scenario.sites for the size that is tested.",
    )


class Arrivals(_Strict):
    """Poisson arrivals per device; the rate follows a diurnal (sine) curve."""

    rate_per_device: float = Field(
        gt=0, le=50, description="Mean requests/s of one device (at most 50)."
    )
    diurnal_amplitude: float = Field(
        0.0, ge=0, lt=1, description="0 = flat; 0.5 = the rate swings ±50 % over a period."
    )
    diurnal_period_s: float = Field(
        60.0, gt=0, description="Length of one simulated 'day' in seconds."
    )


class PromptClass(_Strict):
    """One kind of prompt in the mix: its length in words (a simulated token each)."""

    name: str = Field(min_length=1, description="Shown in the ledger and the report.")
    words: int = Field(ge=1, le=100_000, description="Words in the user message (1 to 100000).")
    weight: float = Field(gt=0, description="Relative share in the mix.")


class Traffic(_Strict):
    """What each request asks for."""

    streaming_share: float = Field(0.3, ge=0, le=1, description="Share of streamed requests.")
    max_tokens: int = Field(
        16, ge=1, le=4096, description="max_tokens of every request (1 to 4096)."
    )
    deadline_s: float = Field(
        15.0, gt=0, description="A request not answered this long after it was sent is a failure."
    )
    model: str = Field("sim-local", min_length=1, description="The model clients ask for.")


class LocalModel(_Strict):
    """The SIMULATED local model's timing and confidence (see ``openautoglm.sim.runtime``)."""

    ttft_s: float = Field(0.05, ge=0, description="Time to the first token.")
    tokens_per_s: float = Field(100.0, gt=0, description="Tokens per second after the first.")
    logprob_mean: float = Field(-0.4, le=0, description="Mean token log-probability.")
    logprob_sd: float = Field(0.3, ge=0, description="Spread of token logprobs in one answer.")
    difficulty_sd: float = Field(
        0.3, ge=0, description="Spread of the per-request mean (hard vs easy requests)."
    )
    n_ctx: int = Field(2048, ge=64, description="Context window in tokens.")
    batch_exponent: float = Field(
        0.25,
        ge=0,
        le=1,
        description="With k sequences decoding together (edge `parallel`), the device makes "
        "tokens_per_s * k**batch_exponent tokens/s in all (0.25: 1.4x at 4, 1.7x at 8, as "
        "llama.cpp's batched decode on 2 cores).",
    )


class HubSpec(_Strict):
    """The hub side: nats-server(s), leaf nodes, and `hubctl serve` workers with the echo back-end."""

    workers: int = Field(
        2, ge=0, le=32, description="hubctl serve processes at the start (0 to 32)."
    )
    model: str = Field("sim-hub", min_length=1, description="Hub model name (echo back-end).")
    echo_delay_s: float = Field(0.0, ge=0, description="Pause between echoed words.")
    latency_ms: float = Field(
        0.0, ge=0, description="Added one-way delay between the workers and NATS (a far hub)."
    )
    cluster: bool = Field(False, description="Three hub-side nats-servers in a cluster, not one.")
    leaf_nodes: bool = Field(True, description="One leaf nats-server per site (through a proxy).")
    concurrency: int = Field(64, ge=1, description="Requests one worker runs at once.")


class Fault(_Strict):
    """One entry of the fault schedule."""

    at_s: float = Field(ge=0, description="Seconds after traffic starts.")
    kind: FaultKind = Field(description="What happens.")
    duration_s: float | None = Field(
        None, gt=0, description="partition_site, slow_hub, collector_down: healed after this."
    )
    worker: int | Literal["all"] = Field(
        0, description="kill_worker: the worker's index (in start order) or 'all'."
    )
    site: str | None = Field(None, description="partition_site: the site cut off.")
    mode: Literal["blackhole", "drop", "delay"] = Field(
        "blackhole",
        description="partition_site/collector_down: blackhole (bytes vanish), drop (connections "
        "reset), delay (delay_ms each way).",
    )
    delay_ms: float = Field(300.0, ge=0, description="slow_hub, or mode = delay: added delay.")
    node: int = Field(0, ge=0, le=2, description="restart_nats: which hub-side server (cluster).")
    down_s: float = Field(1.0, ge=0, description="restart_nats: seconds the node stays down.")
    jump_s: float = Field(3600.0, description="clock_jump: wall-clock step (negative = back).")
    waves: str = Field(
        "30%,60%,100%", description="plugin_rollout: `hubctl rollout start --waves` of the rollout."
    )
    window_s: float = Field(
        3.0, gt=0, description="plugin_rollout: each wave's health window (`--window`)."
    )

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind in WINDOWED and self.duration_s is None:
            raise ValueError(f"a {self.kind} fault needs duration_s (when it is healed)")
        if self.kind == "partition_site" and self.site is None:
            raise ValueError("a partition_site fault needs site = the name of the site to cut off")
        return self

    @property
    def until_s(self) -> float:
        """When the fault ends (``at_s`` for instant ones)."""
        return self.at_s + (self.duration_s or 0.0)


class Batches(_Strict):
    """Deferred batches: some devices submit ``/v1/files`` + ``/v1/batches`` to their site's leaf."""

    device_share: float = Field(
        0.0, ge=0, le=1, description="Share of each site's devices that submit batches (0: none)."
    )
    lines_per_batch: int = Field(
        4, ge=1, le=1000, description="Request lines in one batch (1 to 1000)."
    )
    submit_at_s: list[float] = Field(
        default_factory=lambda: [1.0],
        description="Seconds after traffic starts at which each submitting device sends a batch.",
    )
    answer_within_s: float = Field(
        30.0, gt=0, description="After the traffic ends, how long the batches may take to finish."
    )


class Expect(_Strict):
    """Thresholds of the invariant checks (``openautoglm.sim.invariants``)."""

    outage_fallback_share: float = Field(
        0.9,
        ge=0,
        le=1,
        description="During a hub outage, at least this share of the requests the policy sends to "
        "the cloud are answered locally with reason fallback (after the detection grace).",
    )
    detect_grace_s: float = Field(
        1.0, ge=0, description="Time after a fault starts or heals before its effect is judged."
    )
    max_fallback_share_healthy: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Outside fault windows, at most this share of cloud-bound requests fall back.",
    )
    breakers_reclose: bool = Field(
        True, description="Breakers opened by a hub outage close again before the run ends."
    )


class Scenario(_Strict):
    """A whole scenario file (see the module docstring)."""

    name: str = Field(min_length=1, description="Scenario name (report title).")
    description: str = Field("", description="One paragraph: what it shows.")
    duration_s: float = Field(
        gt=0,
        le=3600,
        description="Seconds of traffic (at most 3600). The ledger keeps one entry per request "
        "in memory: about arrivals.rate_per_device × devices × duration_s entries.",
    )
    seed: int = Field(1, description="Random seed: arrivals, prompts, confidence.")
    sites: list[Site] = Field(
        min_length=1,
        description="[[sites]] tables; their number has no limit. The tested size is "
        "bench/fleet_scale.py's: up to 200 devices in all (sites of 50), about 0.2 MB RSS each.",
    )
    arrivals: Arrivals
    prompts: list[PromptClass] = Field(min_length=1, description="[[prompts]]: the length mix.")
    traffic: Traffic = Field(default_factory=Traffic)
    local: LocalModel = Field(default_factory=LocalModel)
    hub: HubSpec = Field(default_factory=HubSpec)
    edge: dict[str, Any] = Field(
        default_factory=dict,
        description="Edge settings of every device (hub link, router …); see `edge-agent --help`.",
    )
    telemetry: bool = Field(
        False, description="Devices export OTLP to a harness-run collector (collector_down)."
    )
    faults: list[Fault] = Field(default_factory=list, description="[[faults]]: the schedule.")
    batches: Batches = Field(default_factory=Batches)
    expect: Expect = Field(default_factory=Expect)

    @model_validator(mode="after")
    def _deadline_can_hold(self) -> Self:
        hub = self.edge.get("hub", {})
        bounds = {
            "edge.hub.request_timeout_s": float(hub.get("request_timeout_s", 60.0)),
            "edge.hub.first_chunk_timeout_s": float(hub.get("first_chunk_timeout_s", 15.0)),
            "edge.hub.chunk_timeout_s": float(hub.get("chunk_timeout_s", 10.0)),
        }
        name, longest = max(bounds.items(), key=lambda kv: kv[1])
        if longest >= self.traffic.deadline_s:
            raise ValueError(
                f"traffic.deadline_s = {self.traffic.deadline_s:g} cannot be kept: a failing hub "
                f"may hold a request for {name} = {longest:g} s before the device falls back; "
                "raise the deadline or lower that timeout"
            )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ValueError("two [[sites]] share a name; give every site its own name")
        for fault in self.faults:
            if fault.site is not None and fault.site not in names:
                raise ValueError(
                    f"fault {fault.kind} at {fault.at_s:g} s names site {fault.site!r}, "
                    f"which is not one of the [[sites]]: {', '.join(names)}"
                )
            if fault.kind == "partition_site" and not self.hub.leaf_nodes:
                raise ValueError(
                    "partition_site needs hub.leaf_nodes = true (the cut is between a site's "
                    "leaf node and the hub side)"
                )
            if fault.kind == "restart_nats" and fault.node > 0 and not self.hub.cluster:
                raise ValueError(
                    f"restart_nats node = {fault.node} needs hub.cluster = true (one server: node 0)"
                )
            if fault.kind == "collector_down" and not self.telemetry:
                raise ValueError(
                    "collector_down needs telemetry = true (nothing exports otherwise)"
                )
            if fault.kind == "plugin_rollout" and not self.hub.workers:
                raise ValueError(
                    "plugin_rollout needs hub workers (their registry judges waves); "
                    "set [hub] workers = 1 or more"
                )
            if fault.at_s >= self.duration_s:
                raise ValueError(
                    f"fault {fault.kind} at {fault.at_s:g} s is after the run ends "
                    f"(duration_s = {self.duration_s:g})"
                )
        if self.batches.device_share and not self.hub.leaf_nodes:
            raise ValueError(
                "batches.device_share needs hub.leaf_nodes = true (lines wait in the site's leaf)"
            )
        late = [t for t in self.batches.submit_at_s if t >= self.duration_s]
        if self.batches.device_share and late:
            raise ValueError(
                f"batches.submit_at_s {late} is after the run ends "
                f"(duration_s = {self.duration_s:g}); submit earlier or raise duration_s"
            )
        return self

    @property
    def device_count(self) -> int:
        """Devices across all sites."""
        return sum(s.devices for s in self.sites)


def scenario_names() -> list[str]:
    """The scenarios shipped with the package (``open-autoglm sim NAME``)."""
    folder = resources.files("openautoglm.sim") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read(source: str | Path) -> tuple[str, str]:
    path = Path(source)
    if path.suffix == ".toml" or path.exists():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ScenarioError(f"cannot read the scenario file {path}: {exc.strerror}") from None
    name = str(source)
    if name not in scenario_names():
        raise ScenarioError(
            f"no scenario file {name!r} and no shipped scenario of that name; "
            f"shipped: {', '.join(scenario_names())} (or pass a path to a .toml file)"
        )
    folder = resources.files("openautoglm.sim") / "scenarios"
    return (folder / f"{name}.toml").read_text(encoding="utf-8"), f"<shipped {name}>"


def load_scenario(source: str | Path, **overrides: Any) -> Scenario:
    """Read and validate a scenario file or a shipped scenario's name; ``overrides`` win."""
    text, where = _read(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{where} is not valid TOML: {exc}") from None
    data.update(overrides)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{where} is not a valid scenario:\n{_explain(exc)}") from None


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        place = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {place}: {err['msg']}")
    return "\n".join(lines)
