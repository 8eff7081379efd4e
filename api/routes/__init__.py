"""One blueprint per resource."""

from __future__ import annotations

import importlib

from flask import Flask

# Modules that define ``bp``; a module listed here that does not exist yet is skipped (work in progress).
BLUEPRINT_MODULES = (
    "health",
    "assistants",
    "phone_numbers",
    "tools",
    "credentials",
    "webhook_endpoints",
    "files",
    "structured_run",
    "structured_outputs",
    "call_control",
    "freeswitch_hooks",
    "calls",
    "logs",
    "observe",
    "pcap",
    "recordings",
    "dashboard",
)


def register_blueprints(app: Flask) -> None:
    for name in BLUEPRINT_MODULES:
        try:
            module = importlib.import_module(f"api.routes.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"api.routes.{name}":
                continue
            raise
        app.register_blueprint(module.bp)
