"""The quarantine's metric families (read at scrape time from its parts)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from warden.guard.probation import FAILED, INCONCLUSIVE, SURVIVED, Probation

WAIT_RESULTS = ("released", "timed_out", "full")


def quarantine_families(probation: Probation) -> Iterable[Metric]:
    quarantine, sync = probation.quarantine, probation.sync
    entries = GaugeMetricFamily(
        "warden_quarantine_entries", "Fingerprints in quarantine: held (the engine said it "
        "died), watched (its connections vanished), blocked (a probe died, or two deaths)",
        labels=["state"])
    for state, count in quarantine.counts().items():
        entries.add_metric([state], count)
    yield entries
    probes = CounterMetricFamily("warden_quarantine_probes", "Requests let out of quarantine "
                                 "one at a time, by outcome", labels=["outcome"])
    for outcome in (SURVIVED, FAILED, INCONCLUSIVE):
        probes.add_metric([outcome], probation.probes[outcome])
    yield probes
    waits = CounterMetricFamily("warden_quarantine_waits", "Requests that waited for a "
                                "probe, by how the wait ended (full: no room to wait)",
                                labels=["result"])
    for result in WAIT_RESULTS:
        waits.add_metric([result], probation.waits[result])
    yield waits
    yield GaugeMetricFamily("warden_quarantine_waiting", "Requests waiting for a probe now",
                            value=probation.waiting)
    yield CounterMetricFamily("warden_quarantine_expired", "Entries lifted because they "
                              "ran out of time (hold_for, block_for)", value=sync.expired)
    yield GaugeMetricFamily("warden_quarantine_store_up", "Whether the quarantine's store "
                            "answers (0: this gateway serves with what it knows, or refuses "
                            "with fail_mode closed)", value=1 if sync.up else 0)
    yield CounterMetricFamily("warden_quarantine_store_failures", "Store calls that failed "
                              "or timed out", value=sync.failures)
    yield GaugeMetricFamily("warden_quarantine_store_pending", "Changes this gateway made "
                            "that its store has not taken yet", value=len(sync.pending))
    yield CounterMetricFamily("warden_quarantine_store_dropped", "Changes the store never "
                              "got (the queue was full while it was down)",
                              value=sync.dropped)
