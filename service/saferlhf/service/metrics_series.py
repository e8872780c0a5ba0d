"""The per-job training gauges (DESIGN §9) as plain dicts behind one custom collector.

Why not prometheus_client `Gauge` children: a job has ~11 training series, and
`generate_latest` formats every sample from scratch (label names validated and escaped, label
values escaped, per label per sample) — about 40 µs a series, so 1,000 jobs cost 400+ ms a scrape
on 2 loaded cores. Here a series' exposition line is rendered when its value is set (once per
ingested event batch), and `/metrics` (`exposition`) joins the pre-rendered lines; `collect()`
still yields ordinary `GaugeMetricFamily` objects, so `registry.get_sample_value`,
`generate_latest` and `name[]`-restricted scrapes see exactly the same samples.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from saferlhf.service.metrics_catalog import MetricDef

Series = tuple[str, tuple[str, ...]]  # (metric name, label values in catalog order)
EOF = b"# EOF\n"  # the OpenMetrics terminator


def _escape_value(value: str) -> str:
    """Label-value escaping shared by the text format 0.0.4 and OpenMetrics."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(m: MetricDef, openmetrics: bool) -> str:
    doc = m.help.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        doc = doc.replace('"', r"\"")
    return f"# HELP {m.name} {doc}\n# TYPE {m.name} gauge\n"


class TrainingSeries(Collector):
    """Last value of every (gauge, label values) series, plus its rendered exposition line."""

    def __init__(self, defs: Sequence[MetricDef]) -> None:
        self._defs = tuple(defs)
        self._labels = {m.name: m.labels for m in self._defs}
        self._lock = threading.Lock()
        # name -> label values -> (value, "name{labels} value\n"); dicts keep insertion order.
        self._series: dict[str, dict[tuple[str, ...], tuple[float, str]]] = {
            m.name: {} for m in self._defs}
        self._prefixes: dict[Series, str] = {}  # "name{labels} " of each live series
        # label names sorted as generate_latest sorts them, with each one's catalog position
        self._order = {m.name: sorted(range(len(m.labels)), key=lambda i: m.labels[i])
                       for m in self._defs}
        self._skip = threading.local()  # set while `exposition` renders the other collectors

    def set(self, name: str, values: tuple[str, ...], value: float) -> bool:
        """Set one series' value; True when the series is new."""
        prefix = self._prefixes.get((name, values))
        created = prefix is None
        if created:
            labels = self._labels[name]
            prefix = name + "{" + ",".join(
                f'{labels[i]}="{_escape_value(values[i])}"' for i in self._order[name]) + "} "
            with self._lock:
                self._prefixes[(name, values)] = prefix
        line = prefix + floatToGoString(value) + "\n"
        with self._lock:
            self._series[name][values] = (value, line)
        return created

    def remove(self, name: str, values: tuple[str, ...]) -> bool:
        """Drop one series; False when it was not there."""
        with self._lock:
            self._prefixes.pop((name, values), None)
            return self._series[name].pop(values, None) is not None

    # ---- the Collector interface (every consumer but the /metrics fast path) ---------------
    def collect(self) -> Iterator[GaugeMetricFamily]:
        if getattr(self._skip, "on", False):
            return
        for m in self._defs:
            family = GaugeMetricFamily(m.name, m.help, labels=list(m.labels))
            with self._lock:
                items = list(self._series[m.name].items())
            for values, (value, _line) in items:
                family.add_metric(list(values), value)
            yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        for m in self._defs:
            yield GaugeMetricFamily(m.name, m.help, labels=list(m.labels))

    # ---- the fast path ----------------------------------------------------------------------
    def render(self, openmetrics: bool = False) -> str:
        """These families in the text format (or OpenMetrics, without its `# EOF`)."""
        parts = []
        for m in self._defs:
            with self._lock:
                lines = [line for _value, line in self._series[m.name].values()]
            parts.append(_header(m, openmetrics))
            parts.extend(lines)
        return "".join(parts)

    def exposition(self, registry: Collector, encoder: Callable[[Collector], bytes],
                   openmetrics: bool) -> bytes:
        """`encoder(registry)` with these families rendered from their pre-built lines instead
        of collected sample by sample."""
        self._skip.on = True
        try:
            rest = encoder(registry)
        finally:
            self._skip.on = False
        fast = self.render(openmetrics).encode()
        if openmetrics and rest.endswith(EOF):
            return rest[: -len(EOF)] + fast + EOF
        return rest + fast
