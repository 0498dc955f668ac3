"""Kafka topic trigger: one run per message.

``KafkaTopic`` declares the trigger: the topic, its consumer's settings (bootstrap servers, group,
``client_options``), how values decode and where dead messages go. Its source, one consumer shared
by every trigger with the same :attr:`KafkaTopic.subscription`, is ``sensors.kafka_source``; the
pure reading of a message (event, offsets, dead-letter headers) is ``sensors.kafka_records``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiokafka import AIOKafkaConsumer

from engine.errors import TriggerError

from .base import EventFilter, ParamsMapper, Trigger
from .kafka_source import KafkaSource

if TYPE_CHECKING:
    from engine.clock import Clock

__all__ = ["KafkaTopic", "consumer_in_words", "source_for"]

#: Consumer settings Podium owns: its guarantees depend on them.
_PODIUM_OPTIONS = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "key_deserializer",
        "value_deserializer",
        "loop",
    }
)
#: ``client_options`` that also apply to the dead-letter producer (connection and security).
_PRODUCER_OPTIONS = frozenset(
    {
        "client_id",
        "metadata_max_age_ms",
        "request_timeout_ms",
        "retry_backoff_ms",
        "api_version",
        "security_protocol",
        "ssl_context",
        "connections_max_idle_ms",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
    }
)


@functools.cache
def _consumer_parameters() -> frozenset[str]:
    parameters = inspect.signature(AIOKafkaConsumer).parameters.values()
    return frozenset(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class KafkaTopic:
    """Start one run per message on ``topic``.

    A JSON-object value becomes the run's params over the DAG's defaults; any other value becomes
    ``{"value": ...}``. The run key is ``kafka:{topic}:{partition}:{offset}``; the consumer commits an
    offset only after the run for that message is stored. ``ctx.event`` (and what ``filter`` and
    ``params`` receive) is ``{"topic", "partition", "offset", "key", "timestamp", "headers",
    "value"}``, ``value`` being the decoded JSON (``value_format="json"``) or the text (``"raw"``).
    A value that is not JSON is recorded dead and, with ``dead_letter_topic``, copied there with
    ``podium.*`` headers naming its origin and error. ``client_options`` go to aiokafka's consumer
    (SASL/SSL, timeouts, ``auto_offset_reset``...); the connection and security ones also to the
    dead-letter producer.
    """

    topic: str
    _: KW_ONLY
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "podium"
    value_format: Literal["json", "raw"] = "json"
    filter: EventFilter | None = None
    params: ParamsMapper | None = None
    dead_letter_topic: str | None = None
    client_options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets

    def __post_init__(self) -> None:
        where = f"KafkaTopic({self.topic!r})"
        if not isinstance(self.topic, str) or not self.topic:
            raise TriggerError(f"KafkaTopic: topic must be a non-empty string, got {self.topic!r}")
        if self.value_format not in ("json", "raw"):
            raise TriggerError(f"{where}: value_format must be 'json' or 'raw'")
        if self.dead_letter_topic == self.topic:
            raise TriggerError(f"{where}: the dead-letter topic cannot be the topic itself")
        owned = sorted(_PODIUM_OPTIONS & set(self.client_options))
        if owned:
            raise TriggerError(
                f"{where}: client_options cannot set {', '.join(owned)} (Podium sets them; "
                "offsets are committed only after the runs are stored)"
            )
        unknown = sorted(set(self.client_options) - _consumer_parameters())
        if unknown:
            raise TriggerError(
                f"{where}: client_options has unknown aiokafka consumer option(s) "
                f"{', '.join(unknown)}"
            )

    @property
    def subscription(self) -> str:
        """The shared consumer's id: triggers with equal bootstrap servers, group and topic share
        one consumer."""
        return f"kafka:{self.bootstrap_servers}:{self.group_id}:{self.topic}"

    @property
    def asset_uri(self) -> str:
        """The topic as an asset (``SourceAsset``): ``kafka://{bootstrap_servers}/{topic}``."""
        return f"kafka://{self.bootstrap_servers}/{self.topic}"

    # -- the Trigger protocol --------------------------------------------------------------------

    @property
    def schedule(self) -> None:
        return None

    @property
    def consumer_key(self) -> str:
        return consumer_in_words(self.bootstrap_servers, self.group_id, self.topic)

    def source_key(self, dag_id: str, index: int) -> str:
        """:attr:`subscription`, whatever the DAG."""
        return self.subscription

    def describe(self) -> str:
        """E.g. ``Kafka topic orders on 127.0.0.1:9092 (group podium)``."""
        return f"Kafka topic {self.topic} on {self.bootstrap_servers} (group {self.group_id})"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Every message on the topic is for every trigger of it (narrow with ``filter``)."""
        return True

    def source(
        self, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Trigger] = ()
    ) -> KafkaSource:
        """The consumer of this trigger and the ``sharing`` ones; see :func:`source_for`."""
        others = [t for t in sharing if isinstance(t, KafkaTopic)]
        if len(others) != len(sharing):
            foreign = next(t for t in sharing if not isinstance(t, KafkaTopic))
            raise TriggerError(f"{foreign!r} is not a Kafka trigger of {self.subscription}")
        return source_for(self, *others)

    def consumer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaConsumer``."""
        return {
            "auto_offset_reset": "earliest",
            **self.client_options,
            "bootstrap_servers": self.bootstrap_servers,
            "group_id": self.group_id,
            "enable_auto_commit": False,
        }

    def producer_options(self) -> dict[str, Any]:
        """Keyword arguments for the dead-letter ``AIOKafkaProducer``."""
        shared = {k: v for k, v in self.client_options.items() if k in _PRODUCER_OPTIONS}
        return {**shared, "bootstrap_servers": self.bootstrap_servers, "acks": "all"}


def consumer_in_words(bootstrap_servers: str, group_id: str, topic: str) -> str:
    """A Kafka consumer's identity (``Trigger.consumer_key``): one group reading one topic."""
    return f"Kafka topic {topic!r} in group {group_id!r} on {bootstrap_servers}"


def source_for(trigger: KafkaTopic, *sharing: KafkaTopic) -> KafkaSource:
    """The one source of ``trigger`` and the ``sharing`` triggers with the same subscription.

    They share one consumer, so they must agree on how it decodes and where dead messages go:
    otherwise a ``TriggerError`` names the difference (two consumers of one group would each get
    only some of the partitions).
    """
    for other in sharing:
        if other.subscription != trigger.subscription:
            raise TriggerError(f"{other!r} is not a trigger of {trigger.subscription}")
        for name in ("value_format", "dead_letter_topic", "client_options"):
            if getattr(other, name) != getattr(trigger, name):
                raise TriggerError(
                    f"Kafka triggers of {trigger.topic!r} (group {trigger.group_id!r}) share one "
                    f"consumer but differ in {name}: give them the same {name}, or another group_id"
                )
    return KafkaSource(trigger)
