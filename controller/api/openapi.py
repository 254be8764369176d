"""Additions to the OpenAPI document that no single route declares (answers a layer around
every route may give): :func:`edit_operations` applies an edit to each ``/api/v1``
operation once, when the document is first built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from controller.api.tokens import API_PREFIX

__all__ = ["ERROR_REF", "edit_operations"]

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
"""the schema of the API's one error shape"""


def edit_operations(app: FastAPI, edit: Callable[[str, str, dict[str, Any]], None]) -> None:
    """Wrap ``app.openapi`` so that ``edit(path, METHOD, operation)`` runs on every
    operation under ``/api/v1`` (each edit must be idempotent: FastAPI caches the
    document, and every wrapper runs again on each call)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        doc = build()
        for path, operations in doc.get("paths", {}).items():
            if path.startswith(f"{API_PREFIX}/"):
                for method, op in operations.items():
                    edit(path, method.upper(), op)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
