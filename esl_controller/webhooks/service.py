"""The webhook service of one process: delivery settings from config, the Deliverer, and the Emitter."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from esl_controller.config import Settings, WebhooksSettings
from esl_controller.security.secrets_box import SecretBox
from esl_controller.webhooks.delivery import Deliverer, DeliverySettings
from esl_controller.webhooks.emit import Emitter
from esl_controller.webhooks.targets import UrlPolicy

log = logging.getLogger("esl_controller.webhooks")


def delivery_settings(cfg: WebhooksSettings) -> DeliverySettings:
    """Map the ``webhooks`` config section onto the deliverer's settings (URL policy included)."""
    return DeliverySettings(
        workers=cfg.workers,
        poll_interval=cfg.poll_interval,
        connect_timeout=cfg.connect_timeout,
        default_timeout=cfg.default_timeout,
        max_attempts=cfg.max_attempts,
        backoff_base=cfg.backoff_base,
        backoff_cap=cfg.backoff_cap,
        lease_seconds=cfg.lease_seconds,
        max_redirects=cfg.max_redirects,
        url_policy=UrlPolicy.build(allow=cfg.allow, deny=cfg.deny, deny_private=cfg.deny_private),
    )


@dataclass
class WebhookService:
    settings: DeliverySettings
    emitter: Emitter
    deliverer: Deliverer | None = None

    def start(self) -> None:
        if self.deliverer is not None:
            self.deliverer.start()
            log.info("webhook delivery started (%d workers)", self.settings.workers)

    def stop(self, timeout: float = 10.0) -> None:
        if self.deliverer is not None:
            self.deliverer.stop(timeout)


def build_webhook_service(settings: Settings, box: SecretBox) -> WebhookService:
    """Raises ConfigError-like ValueError for a bad allow/deny entry (named in the message)."""
    try:
        ds = delivery_settings(settings.webhooks)
    except ValueError as exc:
        from esl_controller.config import ConfigError

        raise ConfigError(f"webhooks.allow/deny: {exc}") from exc
    deliverer = Deliverer(ds, box, node_id=settings.node_id) if settings.webhooks.enabled else None
    emitter = Emitter(
        settings.org_id,
        box,
        wake=deliverer.wake if deliverer is not None else None,
        max_attempts=ds.max_attempts,
    )
    return WebhookService(ds, emitter, deliverer)
