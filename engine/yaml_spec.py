"""The shape of a YAML DAG file, as pydantic models: what validates a file is what ``podium schema``
prints for editors (``docs/podium-dag.schema.json``).

Every model forbids unknown keys and is strict (``retries: "3"`` is an error, not a 3). Numbers
with a lower bound fail with one message for both kinds of mistake (``must be an integer >= 0``).
``engine.yaml_dags`` turns the errors into ``file:line:column: path: message`` and compiles a valid
file into a ``DAG``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

PARAM_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "list": list,
    "object": dict,
}


def _int_at_least(minimum: int) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise PydanticCustomError("podium", f"must be an integer >= {minimum}")
        return value

    return BeforeValidator(check)


def _seconds(*, zero_ok: bool) -> Any:
    def check(value: Any) -> Any:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or value < 0 or (value == 0 and not zero_ok) or value != value:
            bound = ">= 0" if zero_ok else "> 0"
            raise PydanticCustomError("podium", f"must be a number of seconds {bound}")
        return value

    return BeforeValidator(check)


def _number_as_text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


NonNegativeInt = Annotated[int, Field(ge=0), _int_at_least(0)]
PositiveInt = Annotated[int, Field(ge=1), _int_at_least(1)]
Seconds = Annotated[float, Field(gt=0), _seconds(zero_ok=False)]
NonNegativeSeconds = Annotated[float, Field(ge=0), _seconds(zero_ok=True)]
Text = Annotated[str, BeforeValidator(_number_as_text)]  # `[sleep, 5]`: numbers are text here
Name = Annotated[str, Field(min_length=1)]
TriggerRuleName = Literal[
    "all_success", "all_failed", "all_done", "one_success", "one_failed", "none_failed", "always"
]
CatchUp = Literal["none", "latest", "all"]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


# -- params and triggers ----------------------------------------------------------------------------


class ParamSpec(Spec):
    """A DAG param: its type, and its default (a param without one is required)."""

    type: Literal["string", "integer", "number", "boolean", "list", "object"] = "string"
    default: Any = None
    description: str | None = None

    @model_validator(mode="after")
    def _default_has_the_type(self) -> ParamSpec:
        if "default" in self.model_fields_set and self.default is not None:
            expected = PARAM_TYPES[self.type]
            value = self.default
            ok = isinstance(value, expected) and not (
                isinstance(value, bool) and expected is not bool
            )
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise PydanticCustomError("podium", f"default {value!r} is not of type {self.type}")
        return self

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


class CronSpec(Spec):
    """``Cron(schedule, tz=..., catchup=...)``: five cron fields in the time zone ``tz``."""

    schedule: Name
    tz: str = "UTC"
    catchup: CatchUp = "latest"


class EverySpec(Spec):
    """``Every(seconds=...)``."""

    seconds: Seconds
    catchup: CatchUp = "latest"


class KafkaSpec(Spec):
    """``KafkaTopic(topic, ...)``: one run per message; a JSON object value becomes the params."""

    topic: Name
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "podium"
    value_format: Literal["json", "raw"] = "json"
    dead_letter_topic: str | None = None


class S3Spec(Spec):
    """``S3Events(bucket, ...)``: from SQS notifications (``queue_url``), notification records on a
    Kafka topic (``kafka_topic``), or by polling the bucket."""

    bucket: Name
    prefix: str = ""
    suffix: str = ""
    queue_url: str | None = None
    kafka_topic: str | None = None
    bootstrap_servers: str | None = None
    group_id: str | None = None
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    poll_interval: Seconds = 30.0
    start: Literal["new", "existing"] = "new"


class AfterSpec(Spec):
    """``AfterDag(dag, state=...)``: when a run of another DAG ends in one of ``state``."""

    dag: Name
    state: list[str] = Field(default_factory=lambda: ["success"])

    @model_validator(mode="before")
    @classmethod
    def _one_state(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("state"), str):
            return {**data, "state": [data["state"]]}
        return data


class TriggerSpec(Spec):
    """One trigger: exactly one of ``cron``, ``every``, ``kafka``, ``s3``, ``after``."""

    cron: CronSpec | None = None
    every: EverySpec | None = None
    kafka: KafkaSpec | None = None
    s3: S3Spec | None = None
    after: AfterSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TriggerSpec:
        given = [name for name in ("cron", "every", "kafka", "s3", "after") if getattr(self, name)]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise PydanticCustomError(
                "podium", f"a trigger has exactly one of cron, every, kafka, s3, after ({found})"
            )
        return self


# -- tasks ------------------------------------------------------------------------------------------


class TaskOptionsSpec(Spec):
    """What a task may set, and ``defaults`` sets for every task."""

    retries: NonNegativeInt | None = None
    retry_delay: NonNegativeSeconds | None = None
    retry_backoff: Annotated[float, Field(ge=1)] | None = None
    max_retry_delay: Seconds | None = None
    timeout: Seconds | None = None
    pool: Name | None = None
    priority: int | None = None
    concurrency: PositiveInt | None = None
    trigger_rule: TriggerRuleName | None = None


class ShellSpec(Spec):
    """The ``shell`` step: run ``argv`` (no shell unless you call one). Strings are templates."""

    argv: Annotated[list[Text], Field(min_length=1)]
    env: dict[str, Text] = Field(default_factory=dict)
    cwd: str | None = None
    timeout: Seconds | None = None


class HttpSpec(Spec):
    """The ``http`` step: one request; the response's JSON (or text) is the result. Strings are
    templates."""

    url: Name
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = Field(default=None, alias="json", description="sent as the JSON body")
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = None
    timeout: Seconds = 30.0


GROUP_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
GroupId = Annotated[str, Field(pattern=GROUP_PATTERN)]


class TaskSpec(TaskOptionsSpec):
    """A task: exactly one of ``call`` (a Python function, ``module:function``, with ``args``),
    ``shell`` or ``http``; ``depends_on`` lists the tasks that must finish first. A string in
    ``args`` that is one ``{{ expression }}`` keeps its type, and ``{{ tasks.<id>.result }}`` is a
    data edge. ``map`` makes one instance per element (``call`` only), ``group`` puts the task in
    a task group (its id becomes ``<group>.<key>``)."""

    description: str | None = None
    call: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    mapped: dict[Name, Any] = Field(
        default_factory=dict,
        alias="map",
        description="parameter -> a list, '{{ tasks.<id>.result }}' or '{{ params.<name> }}'; "
        "one instance per element (several are zipped)",
    )
    shell: ShellSpec | None = None
    http: HttpSpec | None = None
    depends_on: list[Name] = Field(default_factory=list)
    group: GroupId | None = Field(default=None, description="a task group, 'load' or 'load.eu'")

    @model_validator(mode="after")
    def _one_kind(self) -> TaskSpec:
        given = [name for name in ("call", "shell", "http") if getattr(self, name) is not None]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise PydanticCustomError(
                "podium", f"a task has exactly one of call, shell, http ({found})"
            )
        if self.args and self.call is None:
            raise PydanticCustomError("podium", "args go with call (a Python function)")
        if self.mapped and self.call is None:
            raise PydanticCustomError(
                "podium",
                "map goes with call (to map a command, call 'engine.steps:shell' with map: argv)",
            )
        both = sorted(set(self.mapped) & set(self.args))
        if both:
            raise PydanticCustomError(
                "podium", f"{', '.join(both)} is both in map and in args (pick one)"
            )
        return self

    def full_id(self, key: str) -> str:
        """The task's id in the DAG: its key, under its group."""
        return f"{self.group}.{key}" if self.group else key


class DagSpec(Spec):
    """A YAML DAG file."""

    model_config = ConfigDict(title="Podium DAG", extra="forbid", strict=True)

    dag_id: Annotated[str, Field(pattern=r"^[^/]+$")] | None = Field(
        default=None, description="default: the file name without its extension"
    )
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    triggers: list[TriggerSpec] = Field(default_factory=list)
    max_active_runs: PositiveInt | None = None
    max_active_tasks: PositiveInt | None = None
    defaults: TaskOptionsSpec = Field(default_factory=TaskOptionsSpec)
    tasks: Annotated[dict[str, TaskSpec], Field(min_length=1)]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a YAML DAG file, for editors (``podium schema``)."""
    schema = DagSpec.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
