"""Schema-driven fuzzing: schemathesis generates requests from the server's own OpenAPI schema
(which describes every route, the fast ones included) and sends them to a real socket. No
request it can make may get a 5xx, and the schema must name every route the server answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from modelloop.examples.server import BackgroundServer
from modelloop.project import Project
from modelloop.serving import create_app


@pytest.fixture(scope="module")
def server(served_project: Project) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(served_project)) as running:
        yield running


def operations(server: BackgroundServer) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_no_generated_request_gets_a_server_error(server: BackgroundServer) -> None:
    # Hypothesis drives each operation's strategy directly (schemathesis's pytest plugin lags
    # behind pytest's releases); every generated case is sent to the real socket.
    checked: list[str] = []
    for operation in operations(server):

        @given(case=operation.as_strategy())
        @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def fuzz(case: Any) -> None:
            response = case.call(base_url=server.url, timeout=30)
            assert response.status_code < 500, (
                case.method, case.path, response.status_code, response.text[:300])

        fuzz()
        checked.append(operation.label)
    assert {"POST /invocations", "POST /labels", "GET /health"} <= set(checked)


def test_the_schema_describes_every_route(server: BackgroundServer) -> None:
    paths = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
    assert {"/invocations", "/labels", "/ping", "/health", "/version"} <= set(paths)
    body = paths["/invocations"]["post"]["requestBody"]["content"]
    assert {"application/json", "text/csv"} <= set(body)
    assert "400" in paths["/invocations"]["post"]["responses"]
    assert "413" in paths["/labels"]["post"]["responses"]
