"""The server's Prometheus metrics, in a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from autojudge.serve.slots import SlotPool


class Metrics:
    def __init__(self, slots: SlotPool):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("autojudge_requests", "HTTP completion requests, by outcome", ["outcome"], registry=r)
        self.tokens = Counter("autojudge_generated_tokens", "tokens generated", registry=r)
        self.cycles = Counter("autojudge_verification_cycles", "target verification passes", registry=r)
        self.mismatches = Counter("autojudge_accepted_mismatches",
                                  "draft tokens kept although the target preferred another", registry=r)
        self.accepted = Histogram("autojudge_accepted_tokens_per_cycle", "per request",
                                  buckets=(1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64), registry=r)
        self.ttft = Histogram("autojudge_time_to_first_token_seconds", "per request", registry=r)
        self.tpot = Histogram("autojudge_time_per_output_token_seconds", "per request",
                              buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28), registry=r)
        # Read when /metrics is scraped, on the event loop that changes them.
        Gauge("autojudge_running_requests", "requests decoding (slots in use)",
              registry=r).set_function(lambda: slots.running)
        Gauge("autojudge_waiting_requests", "requests waiting for a slot",
              registry=r).set_function(lambda: slots.waiting)
        Gauge("autojudge_slots", "requests that may decode at once", registry=r).set(slots.size)
        if slots.gate is not None:
            r.register(_MergedPasses(slots.gate))

    def count_success(self, stats, first_piece_delay: float | None) -> None:
        """A request answered in full: its tokens, cycles and timings."""
        self.requests.labels("ok").inc()
        self.tokens.inc(stats.new_tokens)
        self.cycles.inc(stats.cycles)
        self.mismatches.inc(stats.accepted_mismatches)
        if stats.cycles:
            self.accepted.observe(stats.mean_accepted)
        if first_piece_delay is not None:
            self.ttft.observe(first_piece_delay)
        if stats.new_tokens:
            self.tpot.observe(stats.seconds / stats.new_tokens)


class _MergedPasses:
    """The gate's counts: sequence passes over model passes is the sequences per pass."""

    def __init__(self, gate):
        self.gate = gate

    def collect(self):
        yield CounterMetricFamily("autojudge_model_passes", "forward passes run, one llama_decode group per model, "
                                  "each merging the passes of one or more running requests", value=self.gate.passes)
        yield CounterMetricFamily("autojudge_sequence_passes", "forward passes the running requests asked for",
                                  value=self.gate.requests)
