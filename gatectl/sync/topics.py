"""The MQTT topic tree, in one place (documented with payloads in docs/mqtt.md).

    <prefix>/v1/<site>/<device>/status        retained JSON; the Last Will sets it offline
    <prefix>/v1/<site>/<device>/events        event JSON, QoS 1, never retained
    <prefix>/v1/<site>/<device>/snapshots/<event id>   JPEG bytes, QoS 1
    <prefix>/v1/<site>/<device>/enroll/up     requests for changes made on the device (the
                                              centre decides)
    <prefix>/v1/<site>/<device>/resync        the device asks for every resident
    <prefix>/v1/<site>/<device>/enroll        enrollments for this device (resync answers)
    <prefix>/v1/<site>/enroll                 enrollments for every device of the site
    <prefix>/v1/<site>/<device>/lists         plate-list changes and pass revocations for this
                                              device (a building's, one device's, resyncs)
    <prefix>/v1/<site>/lists                  the same for every device of the site
    <prefix>/v1/<site>/<device>/cmd           signed commands (MQTT 5 response topic +
                                              correlation data)
    <prefix>/v1/<site>/<device>/cmd/resp      default response topic
    <prefix>/v1/<site>/<device>/ack           the centre's receipts: outbox rows it has stored

The device id is a level of its own so a broker ACL can pin each device to its subtree
(`pattern write gatectl/v1/+/%u/#`).
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "v1"


@dataclass(frozen=True)
class Topics:
    prefix: str
    site: str
    device: str

    @property
    def site_root(self) -> str:
        return f"{self.prefix}/{VERSION}/{self.site}"

    @property
    def base(self) -> str:
        return f"{self.site_root}/{self.device}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    def snapshot(self, event_id: str) -> str:
        return f"{self.base}/snapshots/{event_id}"

    @property
    def enroll_up(self) -> str:
        return f"{self.base}/enroll/up"

    @property
    def resync(self) -> str:
        return f"{self.base}/resync"

    @property
    def enroll_device(self) -> str:
        return f"{self.base}/enroll"

    @property
    def enroll_site(self) -> str:
        return f"{self.site_root}/enroll"

    @property
    def lists_device(self) -> str:
        return f"{self.base}/lists"

    @property
    def lists_site(self) -> str:
        return f"{self.site_root}/lists"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def cmd_resp(self) -> str:
        return f"{self.base}/cmd/resp"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"


def device_of(topic: str, prefix: str) -> tuple[str, str, str] | None:
    """(site, device, rest) of a device topic under ``prefix``; None for site-wide topics."""
    head = f"{prefix}/{VERSION}/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head):].split("/", 2)
    if len(parts) < 3:
        return None
    return parts[0], parts[1], parts[2]
