"""Prometheus metrics of the HTTP edge, registered on the registry the composition root hands over.

Labels stay bounded: the route is the matched route's *template* (`/api/v1/jobs/{jobId}`), or `unmatched`
when no route matched; the method is one of the standard methods or `OTHER`; the status is the HTTP code.
The in-progress gauge sums the live processes when several API processes share one multiprocess directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class ApiMetrics:
    requests: Counter
    duration: Histogram
    in_progress: Gauge
    jobs_submitted: Counter
    unavailable: Counter
    """503 answers by cause: one of api.unavailable.UNAVAILABLE_CAUSES."""
    _series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = field(default_factory=dict)
    """The labelled children by (method, route, status): a bounded set, looked up once each."""

    @classmethod
    def register(cls, registry: CollectorRegistry) -> ApiMetrics:
        """Create the collectors on `registry`; a registry can hold them only once (one app per registry)."""
        return cls(
            requests=Counter(
                "reportgen_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=registry
            ),
            duration=Histogram(
                "reportgen_http_request_duration_seconds",
                "Time to answer an HTTP request.",
                ["method", "route"],  # statuses are on the counter; this keeps the bucket series few
                buckets=_BUCKETS,
                registry=registry,
            ),
            in_progress=Gauge(
                "reportgen_http_requests_in_progress",
                "HTTP requests being answered.",
                registry=registry,
                multiprocess_mode="livesum",
            ),
            jobs_submitted=Counter(
                "reportgen_jobs_submitted", "Report jobs accepted (202) through the API.", registry=registry
            ),
            unavailable=Counter(
                "reportgen_http_unavailable",
                "503 answers, by what was unavailable.",
                ["cause"],
                registry=registry,
            ),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"
        series = self._series.get((method, route, status))
        if series is None:
            series = self.requests.labels(method, route, str(status)), self.duration.labels(method, route)
            self._series[method, route, status] = series
        series[0].inc()
        series[1].observe(seconds)
