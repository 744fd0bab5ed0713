"""The flight recorder's metric families (read at scrape time from the recorder and its
sinks)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from warden.record.postgres import PostgresSink
from warden.record.recorder import Recorder


def recorder_families(recorder: Recorder) -> Iterable[Metric]:
    written = CounterMetricFamily("warden_recorder_records", "Audit records handed to "
                                  "the flight recorder's writer and written (or lost)")
    written.add_metric([], recorder.written)
    yield written
    dropped = CounterMetricFamily("warden_recorder_dropped", "Audit records lost, by "
                                  "cause", labels=["cause"])
    writer = recorder.file_sink.writer
    dropped.add_metric(["queue_full"], recorder.dropped)
    dropped.add_metric(["disk_cap"], writer.refused)
    dropped.add_metric(["disk_full"], writer.disk_full)
    dropped.add_metric(["write_error"], writer.failed)
    dropped.add_metric(["render_error"], recorder.unrendered)
    yield dropped
    omitted = CounterMetricFamily("warden_recorder_bodies_omitted", "Records whose bodies "
                                  "(request, forwarded, response) were left out because "
                                  "free disk was low")
    omitted.add_metric([], recorder.bodies_omitted)
    yield omitted
    files = recorder.files
    size = GaugeMetricFamily("warden_recorder_disk_bytes", "Bytes of the recorder's "
                             "files on disk (capped by recorder.max_total_size)")
    size.add_metric([], files.total_bytes if files is not None else 0)
    yield size
    queued = GaugeMetricFamily("warden_recorder_queued", "Records waiting for the writer")
    queued.add_metric([], recorder.queued)
    yield queued
    yield GaugeMetricFamily("warden_recorder_queued_bytes", "Bytes of records waiting for the "
                            "writer (bounded by recorder.queue_bytes)",
                            value=recorder.queued_bytes)
    for sink in recorder.sinks:
        if isinstance(sink, PostgresSink):
            yield from _postgres_families(sink)


def _postgres_families(sink: PostgresSink) -> Iterable[Metric]:
    outcomes = CounterMetricFamily("warden_recorder_postgres_records", "Records sent to the "
                                   "PostgreSQL sink, by outcome", labels=["outcome"])
    outcomes.add_metric(["written"], sink.written)
    outcomes.add_metric(["failed"], sink.failed)
    outcomes.add_metric(["queue_full"], sink.dropped)
    outcomes.add_metric(["shutdown"], sink.abandoned)
    yield outcomes
    yield GaugeMetricFamily("warden_recorder_postgres_queued_bytes", "Bytes of records waiting "
                            "for PostgreSQL (bounded by recorder.postgres.queue_bytes)",
                            value=sink.queued_bytes)
