"""The event loop's lag and stalls (loop_probe.py) as Prometheus families. A collector of its
own, registered beside `GatewayMetrics` when the gateway starts.

`warden_event_loop_lag_seconds` is a real histogram (cumulative `le` buckets, `_sum`,
`_count`); alerts read `histogram_quantile(0.99, rate(..._bucket[5m]))` by that name."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from warden.observe.loop_probe import LoopProbe


class LoopCollector:
    """A prometheus collector (by its `collect` method) of one `LoopProbe`."""

    def __init__(self, probe: LoopProbe):
        self._probe = probe

    def collect(self) -> Iterable[Metric]:
        probe = self._probe
        lag = HistogramMetricFamily(
            "warden_event_loop_lag_seconds", "How late the event loop was to run a timer "
            "due then: the time it spent not serving (sampled every loop_probe.interval, 5 ms "
            "by default, while requests are in flight, every 20 ms otherwise)")
        lag.add_metric([], probe.cumulative(), probe.lag_sum)
        yield lag
        stalls = CounterMetricFamily("warden_event_loop_stalls", "Event loop stalls (a lag "
                                     "of 1 ms or more), by what the loop was doing",
                                     labels=["cause"])
        seconds = CounterMetricFamily("warden_event_loop_stall_seconds", "The lag of those "
                                      "stalls, summed, by cause", labels=["cause"])
        for cause, count in probe.stalls.items():
            stalls.add_metric([cause], count)
            seconds.add_metric([cause], probe.stall_seconds[cause])
        yield stalls
        yield seconds
