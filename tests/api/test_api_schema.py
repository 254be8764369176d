"""The OpenAPI document names every endpoint. (The document's every operation is fuzzed,
positive and negative, with every schemathesis check in ``test_api_fuzz_full.py``.)"""

from __future__ import annotations

import httpx

from .conftest import Api


def test_openapi_document_lists_every_endpoint(diamond: Api) -> None:
    doc = httpx.get(f"{diamond.url}/openapi.json").json()
    for p in ("/api/v1/health", "/api/v1/topology", "/api/v1/switches",
              "/api/v1/switches/{dpid}/flows", "/api/v1/switches/{dpid}/ports",
              "/api/v1/links", "/api/v1/hosts", "/api/v1/paths", "/api/v1/intents",
              "/api/v1/intents/{intent_id}", "/api/v1/routes", "/api/v1/latency-circles",
              "/api/v1/events", "/api/v1/metrics"):
        assert p in doc["paths"], p
    post = doc["paths"]["/api/v1/intents"]["post"]
    assert post["security"] == [{"HTTPBearer": []}]
    assert "security" not in doc["paths"]["/api/v1/intents"]["get"]
    assert httpx.get(f"{diamond.url}/docs").status_code == 200
