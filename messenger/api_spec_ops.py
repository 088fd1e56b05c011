"""The operations part of the OpenAPI document: ``GET /metrics`` (API_CONTRACT.md §4).

``build_spec`` merges these paths. The route is in the route table whatever ``METRICS_PORT``
says: with it set, the public port answers it with 404 ``not_found`` (documented here) and the
metrics port serves it.
"""

from __future__ import annotations

from typing import Any

from messenger import api_spec_parts as parts

EXAMPLE_METRICS = """\
# HELP messenger_messages_accepted_total New messages stored by this process (replays and \
refusals not counted).
# TYPE messenger_messages_accepted_total counter
messenger_messages_accepted_total 42.0
"""


def ops_paths() -> dict[str, Any]:
    return {
        "/metrics": {
            "get": parts.operation(
                "getMetrics",
                "meta",
                "This process's metrics (Prometheus text format)",
                {
                    "200": {
                        "description": "The metrics in the Prometheus text exposition format "
                        "(OpenMetrics when `Accept` asks for application/openmetrics-text).",
                        "content": {
                            "text/plain": {"schema": {"type": "string"},
                                           "example": EXAMPLE_METRICS},
                        },
                    },
                    **parts.error_responses("not_found", "internal_error"),
                },
                auth=False,
                description="No token. With METRICS_PORT unset it is served here, on the "
                "public port; with METRICS_PORT set only on HOST:METRICS_PORT, and this port "
                "answers 404 not_found. Anyone who can reach the port it is served on can read "
                "it: keep METRICS_PORT private (API_CONTRACT.md §4 \"GET /metrics\").",
            )
        },
    }
