"""The log output's metrics: lines dropped because the writer could not keep up."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from warden.observe.log_output import LogOutput


class LogCollector:
    """A prometheus collector over one `LogOutput` (read at scrape time)."""

    def __init__(self, output: LogOutput) -> None:
        self.output = output

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "warden_log_dropped", "Log lines dropped: the queue to the log writer was full "
            "(stderr slow or blocked)", value=self.output.dropped)
        yield GaugeMetricFamily("warden_log_queued", "Log lines waiting for the log writer",
                                value=len(self.output.lines))
