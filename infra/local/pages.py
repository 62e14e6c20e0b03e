"""Pages the local API serves itself: the OpenAPI document of the served model, and a browsable view of it
(Swagger UI, as Powertools ships it, so it works offline)."""

from __future__ import annotations

from pathlib import Path

from aws_lambda_powertools.event_handler.openapi import swagger_ui
from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

from carryover.http.openapi import render
from carryover.manifest import Manifest
from infra.local.server import Page

_ASSETS = Path(swagger_ui.__file__).parent


def api_pages(manifest: Manifest, max_timesteps: int) -> dict[str, Page]:
    spec = render(manifest, max_timesteps)
    html = generate_swagger_html(
        spec,
        (_ASSETS / "swagger-ui-bundle.min.js").read_text(),
        (_ASSETS / "swagger-ui.min.css").read_text(),
        swagger_base_url="",
        oauth2_config=None,
    )
    return {
        "/openapi.json": Page("application/json", spec.encode()),
        "/docs?format=json": Page("application/json", spec.encode()),  # as Powertools' own Swagger UI page serves
        "/docs": Page("text/html; charset=utf-8", html.encode()),
    }
