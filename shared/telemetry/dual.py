"""Metrics written once and exported twice: to Prometheus (``/metrics``) and over OTLP.

One :class:`DualCounter`, :class:`DualHistogram` or :class:`DualGauge` is one figure, defined
once with both of its names, and every call records into both exports. The call API mirrors
``prometheus_client``::

    decisions = DualCounter(
        "agl.route.decisions", "agl_route_decisions", "Routing decisions by tier and reason",
        unit="{decision}", labels={"tier": "agl.tier", "reason": "agl.route.reason"},
        registry=registry, meter=telemetry.meter,
    )
    decisions.labels("cloud", "policy").inc()     # agl_route_decisions_total{tier,reason}
                                                  # + agl.route.decisions{agl.tier,agl.route.reason}

``labels`` maps each Prometheus label name to its OpenTelemetry attribute name, in the order
``.labels(...)`` takes the values. Values are text on both sides, and an empty value is left out
of the OTel attributes, just as Prometheus treats an empty label as an absent one (so
``error.type`` appears only on errors).

Cost: ``.labels(...)`` keeps one child per distinct label tuple, holding the Prometheus child
and a ready attribute dict, so a hot-path ``.inc()`` builds nothing. That cache has exactly as
many entries as ``prometheus_client`` keeps children anyway, so it is bounded by the label
sets' cardinality: keep label values to small fixed sets (model ids, reasons, status codes),
never user text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from opentelemetry.metrics import Meter
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DualCounter", "DualGauge", "DualHistogram"]

Attributes = dict[str, str]


class CounterChild:
    """One label set of a :class:`DualCounter` (what ``.labels(...)`` returns)."""

    __slots__ = ("_add", "_attrs", "_inc")

    def __init__(self, dual: DualCounter, prometheus: Counter, attrs: Attributes) -> None:
        self._inc, self._add, self._attrs = prometheus.inc, dual.otel.add, attrs

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (not negative) on both sides."""
        self._inc(amount)  # first: it refuses a negative amount with ValueError
        self._add(amount, self._attrs)


class HistogramChild:
    """One label set of a :class:`DualHistogram` (what ``.labels(...)`` returns)."""

    __slots__ = ("_attrs", "_observe", "_record", "_sign")

    def __init__(self, dual: DualHistogram, prometheus: Histogram, attrs: Attributes) -> None:
        self._observe, self._record, self._attrs = prometheus.observe, dual.otel.record, attrs
        self._sign = -1.0 if dual.otel_negate else 1.0

    def observe(self, amount: float) -> None:
        """Record one value on both sides (negated on the OTel side if ``otel_negate``)."""
        self._observe(amount)
        self._record(amount * self._sign, self._attrs)


class GaugeChild:
    """One label set of a :class:`DualGauge` (what ``.labels(...)`` returns)."""

    __slots__ = ("_attrs", "_otel_set", "_set")

    def __init__(self, dual: DualGauge, prometheus: Gauge, attrs: Attributes) -> None:
        self._set, self._otel_set, self._attrs = prometheus.set, dual.otel.set, attrs

    def set(self, value: float) -> None:
        """Set the current value on both sides (OTel exports the last value set)."""
        self._set(value)
        self._otel_set(value, self._attrs)


PromT = TypeVar("PromT", Counter, Histogram, Gauge)
ChildT = TypeVar("ChildT", CounterChild, HistogramChild, GaugeChild)


class _Dual(Generic[PromT, ChildT]):
    """Names, label mapping and the child cache shared by the three kinds."""

    prometheus: PromT

    def __init__(
        self,
        otel_name: str,
        prom_name: str,
        description: str,
        *,
        unit: str,
        labels: Mapping[str, str],
    ) -> None:
        self.otel_name = otel_name
        self.prom_name = prom_name
        self.description = description
        self.unit = unit
        self.label_names: tuple[str, ...] = tuple(labels)
        self.attribute_names: tuple[str, ...] = tuple(labels.values())
        self._children: dict[tuple[object, ...], ChildT] = {}
        self._unlabelled: ChildT | None = None

    def _child(self, prometheus: PromT, attrs: Attributes) -> ChildT:
        raise NotImplementedError

    def _finish(self) -> None:
        """Called by subclasses once ``prometheus`` and ``otel`` exist."""
        if not self.label_names:
            self._unlabelled = self._child(self.prometheus, {})

    def labels(self, *values: object, **named: object) -> ChildT:
        """The child for one label set, positional (in ``labels`` order) or by Prometheus name."""
        found = self._children.get(values) if not named else None
        return found if found is not None else self._new_child(values, named)

    def _new_child(self, values: tuple[object, ...], named: Mapping[str, object]) -> ChildT:
        if named:
            if values:
                raise ValueError(
                    f"{self.prom_name}: pass label values by position or by name, not both"
                )
            if set(named) != set(self.label_names):
                raise ValueError(
                    f"{self.prom_name}: labels are {self.label_names}, got {sorted(named)}"
                )
            values = tuple(named[name] for name in self.label_names)
            found = self._children.get(values)
            if found is not None:
                return found
        if not self.label_names:
            raise ValueError(f"{self.prom_name} has no labels; call it without .labels()")
        if len(values) != len(self.label_names):
            raise ValueError(
                f"{self.prom_name}: labels are {self.label_names}, got {len(values)} values"
            )
        text = tuple(str(value) for value in values)
        attrs = {key: value for key, value in zip(self.attribute_names, text, strict=True) if value}
        child = self._child(self.prometheus.labels(*text), attrs)
        # Two threads may race to build the same child; both wrap the same Prometheus child.
        return self._children.setdefault(values, child)

    def _only_child(self) -> ChildT:
        if self._unlabelled is None:
            raise ValueError(
                f"{self.prom_name} has labels {self.label_names}; call .labels(...) first"
            )
        return self._unlabelled

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.otel_name!r}, {self.prom_name!r})"


class DualCounter(_Dual[Counter, CounterChild]):
    """A monotonic count: Prometheus ``<prom_name>_total`` and an OTel counter.

    ``counter.labels("a", "b").inc()``, or ``counter.inc(3)`` when it has no labels.
    """

    def __init__(
        self,
        otel_name: str,
        prom_name: str,
        description: str,
        *,
        unit: str,
        labels: Mapping[str, str] | None = None,
        registry: CollectorRegistry,
        meter: Meter,
    ) -> None:
        super().__init__(otel_name, prom_name, description, unit=unit, labels=labels or {})
        self.prometheus = Counter(prom_name, description, self.label_names, registry=registry)
        self.otel = meter.create_counter(otel_name, unit=unit, description=description)
        self._finish()

    def _child(self, prometheus: Counter, attrs: Attributes) -> CounterChild:
        return CounterChild(self, prometheus, attrs)

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` to a counter without labels."""
        self._only_child().inc(amount)


class DualHistogram(_Dual[Histogram, HistogramChild]):
    """A distribution: Prometheus ``<prom_name>_bucket/_sum/_count`` and an OTel histogram.

    Both sides use the same ``buckets`` (upper bounds, inclusive on both sides). OTel histograms
    drop negative values, so a figure that is never positive (a log-probability) sets
    ``otel_negate``: OTel then records ``-value`` with the negated buckets, and ``otel_name``
    must say so (e.g. ``agl.cascade.nll`` for the mean token log-probability).
    """

    def __init__(
        self,
        otel_name: str,
        prom_name: str,
        description: str,
        *,
        unit: str,
        buckets: Sequence[float],
        labels: Mapping[str, str] | None = None,
        otel_negate: bool = False,
        otel_description: str | None = None,
        registry: CollectorRegistry,
        meter: Meter,
    ) -> None:
        super().__init__(otel_name, prom_name, description, unit=unit, labels=labels or {})
        self.buckets = tuple(buckets)
        self.otel_negate = otel_negate
        sign = -1.0 if otel_negate else 1.0
        self.prometheus = Histogram(
            prom_name, description, self.label_names, buckets=self.buckets, registry=registry
        )
        self.otel = meter.create_histogram(
            otel_name,
            unit=unit,
            description=otel_description or description,
            explicit_bucket_boundaries_advisory=sorted(
                sign * float(b) + 0.0 for b in self.buckets if math.isfinite(b)
            ),
        )
        self._finish()

    def _child(self, prometheus: Histogram, attrs: Attributes) -> HistogramChild:
        return HistogramChild(self, prometheus, attrs)

    def observe(self, amount: float) -> None:
        """Record one value into a histogram without labels."""
        self._only_child().observe(amount)


class DualGauge(_Dual[Gauge, GaugeChild]):
    """A value set from time to time: a Prometheus gauge and an OTel synchronous gauge.

    OTel exports the last value set per label set (cumulative temporality keeps it between
    exports), as Prometheus does.
    """

    def __init__(
        self,
        otel_name: str,
        prom_name: str,
        description: str,
        *,
        unit: str,
        labels: Mapping[str, str] | None = None,
        registry: CollectorRegistry,
        meter: Meter,
    ) -> None:
        super().__init__(otel_name, prom_name, description, unit=unit, labels=labels or {})
        self.prometheus = Gauge(prom_name, description, self.label_names, registry=registry)
        self.otel = meter.create_gauge(otel_name, unit=unit, description=description)
        self._finish()

    def _child(self, prometheus: Gauge, attrs: Attributes) -> GaugeChild:
        return GaugeChild(self, prometheus, attrs)

    def set(self, value: float) -> None:
        """Set a gauge without labels."""
        self._only_child().set(value)
