"""Hypothesis-generated YAML DAG files, valid and broken, through the loader ``podium run`` and
``podium validate`` use: every file gives DAGs or readable errors, each with a line number; the
loader never raises and never reports an internal error (a Python exception's text).

Files are built three ways: documents shaped like a DAG file whose keys and values are drawn from
the right ones, near misses and wrong types (random task graphs with cycles, self-loops and unknown
``depends_on`` targets; good and broken templates; triggers of every kind, good and bad); those
documents' YAML text cut short or with a line or a byte changed; and raw text and bytes (non-UTF-8,
deep nesting, tabs, anchors, duplicate keys).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import DAG
from engine.loader import load_dags
from engine.yaml_dags import YAMLDAGError, load_yaml_dag

from .support import FUZZ, json_scalars

HELPERS = """
def step(path: str = "", limit: int = 1) -> str:
    return f"{path}:{limit}"


def no_args() -> int:
    return 1
"""

# -- pieces of a DAG file ---------------------------------------------------------------------------

names = st.sampled_from(["extract", "load", "clean", "report", "a", "b", "x.y", "", "load "])
scalars = st.one_of(json_scalars, st.sampled_from(["1", "-1", "0", "3.5", "yes", "~", "null"]))
templates = st.sampled_from(
    [
        "{{ params.day }}",
        "{{ params.dy }}",
        "{{ ds }}",
        "{{ logical_date | add_days(-1) | ds }}",
        "{{ params.day",
        "{% if %}",
        "{# c #}",
        "{{ event.value.id }}",
        "{{ ''.__class__ }}",
        "{% raw %}{{ x }}{% endraw %}",
        "{{ tasks.extract.result }}",
        "{{ tasks.ghost.result }}",
        "{{ tasks['g.load'].result | length }}",
        "{{ tasks.extract }}",
        "plain.sh",
        "{{ 1 / 0 }}",
        "{{",
    ]
)
texts = st.one_of(st.text(max_size=12), templates)
wrong = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy``'s values, or a value of the wrong kind."""
    return st.one_of(strategy, strategy, strategy, wrong)


def keyed(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A mapping of these keys, sometimes with a misspelt or unknown one."""
    base = st.fixed_dictionaries(required, optional=optional)
    extra = st.dictionaries(
        st.sampled_from(["retires", "dependson", "shel", "cal", "nope", "default", "TYPE"]),
        scalars,
        max_size=2,
    )
    return maybe(st.one_of(base, base, st.builds(lambda a, b: {**a, **b}, base, extra)))


params = st.dictionaries(
    st.sampled_from(["day", "limit", "region", "flag", "ratio", "items"]),
    keyed(
        {},
        {
            "type": maybe(st.sampled_from(["string", "integer", "number", "boolean", "list"])),
            "default": scalars,
            "description": texts,
        },
    ),
    max_size=4,
)
triggers = st.lists(
    st.one_of(
        keyed({"cron": keyed({"schedule": maybe(st.sampled_from(["0 4 * * *", "61 * * * *", "* *", "@daily"]))},
                             {"tz": maybe(st.sampled_from(["UTC", "Europe/Berlin", "Mars/Olympus"])),
                              "catchup": maybe(st.sampled_from(["none", "latest", "all", "some"]))})}, {}),
        keyed({"every": keyed({"seconds": maybe(st.sampled_from([1, 0, -5, 0.5, float("inf")]))}, {})}, {}),
        keyed({"kafka": keyed({"topic": maybe(texts)}, {"group_id": texts, "value_format": maybe(st.just("raw"))})}, {}),
        keyed({"s3": keyed({"bucket": maybe(texts)}, {"prefix": texts, "queue_url": texts, "start": maybe(st.just("existing"))})}, {}),
        keyed({"after": keyed({"dag": maybe(texts)}, {"state": maybe(st.sampled_from(["success", "any", "weird"]))})}, {}),
        keyed({"cron": st.just({"schedule": "0 4 * * *"}), "every": st.just({"seconds": 5})}, {}),
    ),
    max_size=3,
)  # fmt: skip
options = {
    "retries": maybe(st.integers(-2, 5)),
    "retry_delay": maybe(st.sampled_from([0, 1.5, -1])),
    "timeout": maybe(st.sampled_from([0, 10, -3, 1e9])),
    "pool": maybe(st.sampled_from(["db", ""])),
    "priority": maybe(st.integers(-3, 3)),
    "concurrency": maybe(st.integers(-1, 3)),
    "trigger_rule": maybe(st.sampled_from(["all_success", "all_done", "sometimes"])),
}
arguments = st.dictionaries(
    st.sampled_from(["path", "limit", "nope"]),
    st.one_of(scalars, templates, st.lists(templates, max_size=2), st.dictionaries(st.text(max_size=3), templates, max_size=2)),
    max_size=3,
)  # fmt: skip
kinds = st.one_of(
    st.fixed_dictionaries(
        {"call": maybe(st.sampled_from(["fuzz_yaml_helpers:step", "fuzz_yaml_helpers:no_args",
                                        "fuzz_yaml_helpers:stpe", "nosuchmod:f", "bad target",
                                        "fuzz_yaml_helpers:HELPERS", "os:getcwd"]))},
        optional={"args": maybe(arguments)},
    ),
    st.fixed_dictionaries(
        {"shell": keyed({"argv": maybe(st.lists(st.one_of(texts, st.integers()), max_size=3))},
                        {"env": maybe(st.dictionaries(st.text(max_size=4), texts, max_size=2)),
                         "cwd": texts, "timeout": maybe(st.just(5))})}
    ),
    st.fixed_dictionaries(
        {"http": keyed({"url": maybe(texts)},
                       {"method": maybe(st.sampled_from(["GET", "POST", "FETCH"])),
                        "json": st.one_of(scalars, arguments), "headers": maybe(st.dictionaries(st.text(max_size=4), texts, max_size=2)),
                        "expect_status": maybe(st.lists(st.integers(0, 700), max_size=2))})}
    ),
    st.fixed_dictionaries({}),  # no kind
    st.fixed_dictionaries({"call": st.just("fuzz_yaml_helpers:step"), "shell": st.just({"argv": ["echo"]})}),
)  # fmt: skip


@st.composite
def task_maps(draw: st.DrawFn) -> Any:
    """Tasks with a random dependency graph: cycles, self-loops and unknown targets included."""
    ids = draw(st.lists(names, min_size=0, max_size=5, unique=True))
    tasks: dict[str, Any] = {}
    for task_id in ids:
        spec = dict(draw(kinds))
        spec.update(draw(st.fixed_dictionaries({}, optional=options)))
        upstream = draw(st.lists(st.sampled_from([*ids, "extrct", "ghost"]), max_size=3))
        if upstream or draw(st.booleans()):
            spec["depends_on"] = draw(maybe(st.just(upstream)))
        extra = {
            "group": maybe(st.sampled_from(["g", "g.eu", "bad group", ""])),
            "map": maybe(
                st.dictionaries(
                    st.sampled_from(["path", "limit", "nope"]),
                    st.one_of(templates, st.lists(scalars, max_size=2), scalars),
                    max_size=2,
                )
            ),
        }
        spec.update(draw(st.fixed_dictionaries({}, optional=extra)))
        tasks[task_id] = spec
    return draw(maybe(st.just(tasks)))


documents = st.fixed_dictionaries(
    {"tasks": task_maps()},
    optional={
        "dag_id": maybe(st.sampled_from(["orders", "a/b", ""])),
        "description": texts,
        "tags": maybe(st.lists(st.text(max_size=5), max_size=2)),
        "params": maybe(params),
        "triggers": maybe(triggers),
        "max_active_runs": maybe(st.integers(-1, 3)),
        "defaults": keyed({}, options),
        "schedule": scalars,  # an unknown top-level key
    },
)


@st.composite
def valid_documents(draw: st.DrawFn) -> Any:
    """Files that should load: acyclic graphs of well-formed tasks with templates that parse."""
    good = st.sampled_from(["{{ params.day }}", "{{ ds }}", "{{ run_id }}", "plain", "{# c #}x"])
    ids = draw(
        st.lists(st.sampled_from(["extract", "load", "clean", "report"]), min_size=1, unique=True)
    )
    tasks: dict[str, Any] = {}
    for position, task_id in enumerate(ids):
        if draw(st.booleans()):
            spec: dict[str, Any] = {"shell": {"argv": ["echo", draw(good)]}}
        else:
            spec = {"call": "fuzz_yaml_helpers:step", "args": {"path": draw(good)}}
        upstream = draw(st.lists(st.sampled_from(ids[:position]), unique=True)) if position else []
        if upstream and "call" in spec and draw(st.booleans()):  # a data edge instead
            spec["args"] = {"path": f"{{{{ tasks.{upstream[0]}.result }}}}"}
            if draw(st.booleans()):
                spec["map"], spec["args"] = {"path": spec["args"]["path"]}, {}
            upstream = upstream[1:]
        if upstream:
            spec["depends_on"] = upstream
        spec.update(
            draw(
                st.fixed_dictionaries(
                    {}, optional={"retries": st.integers(0, 3), "timeout": st.just(30)}
                )
            )
        )
        tasks[task_id] = spec
    return {"params": {"day": {"type": "string", "default": "2026-11-25"}}, "tasks": tasks}


def dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A generated file's text, cut short, or with one line dropped, duplicated or re-indented, or
    one byte replaced (sometimes by one that is not UTF-8)."""
    data = dump(draw(documents)).encode("utf-8")
    lines = data.splitlines(keepends=True)
    how = draw(st.sampled_from(["cut", "drop", "repeat", "indent", "byte"]))
    if how == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if how == "byte" and data:
        at = draw(st.integers(0, len(data) - 1))
        value = draw(st.sampled_from([0xFF, 0xC3, 0x80, 0x00, 0x09, ord(":"), ord("{"), ord("-")]))
        return data[:at] + bytes([value]) + data[at + 1 :]
    if not lines:
        return data
    at = draw(st.integers(0, len(lines) - 1))
    if how == "drop":
        del lines[at]
    elif how == "repeat":
        lines.insert(at, lines[at])
    else:
        lines[at] = b"   " + lines[at]
    return b"".join(lines)


def deep(depth: int, style: str) -> bytes:
    """A task's ``argv`` nested ``depth`` levels deep: flow lists, flow mappings or block lists."""
    head = "tasks:\n  a:\n    shell:\n      argv:"
    if style == "list":
        return f"{head} {'[' * depth}echo{']' * depth}\n".encode()
    if style == "dict":
        return f"{head} {'{a: ' * depth}echo{'}' * depth}\n".encode()
    lines = [head] + [" " * (8 + 2 * level) + "-" for level in range(depth)]
    return ("\n".join(lines) + " echo\n").encode()


raw = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"",
            b"\xef\xbb\xbftasks:\n  a: {shell: {argv: [echo]}}\n",  # a BOM
            b"\xff\xfet\x00a\x00",  # UTF-16
            b"tasks:\n\ta: {shell: {argv: [echo]}}\n",  # a tab
            b"tasks: &t\n  a: {shell: {argv: [echo]}}\nextra: *t\n",
            b"tasks:\n  a: {shell: {argv: [echo]}}\n  a: {shell: {argv: [ls]}}\n",
            b"tasks:\n  a: !!python/object:os.system {}\n",
            b"tasks: {a: {shell: {argv: [echo]}}}\n---\ntasks: {b: {shell: {argv: [echo]}}}\n",
            b"- tasks\n",
            b"tasks:\n  ? [a, b]\n  : {shell: {argv: [echo]}}\n",
            b"tasks:\n  1: {shell: {argv: [echo]}}\n  null: {shell: {argv: [echo]}}\n",
            b"tasks:\n  a: {shell: {argv: [echo]}, depends_on: [a]}\n",
            b"tasks: {a: {call: 'fuzz_yaml_helpers:step', args: {path: '{{ params.x'}}}\n",
            b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n",
            b"x: " + b"{a: " * 3000 + b"1" + b"}" * 3000 + b"\n",
            b"tasks: {a: {shell: {argv: [" + b"\xe9" * 4 + b"]}}}\n",
        ]
    ),
    st.builds(
        deep,
        st.sampled_from([5, 50, 200, 400, 900, 3000]),
        st.sampled_from(["list", "dict", "block"]),
    ),
)
files = st.one_of(documents.map(lambda d: dump(d).encode("utf-8")), mutated(), raw)

INTERNAL = re.compile(r"Traceback|RecursionError|AttributeError|KeyError|TypeError|object at 0x")


def check_file(data: bytes) -> list[DAG]:
    """Load ``data`` as a YAML DAG file both ways; assert the outcome is a DAG or located errors."""
    with tempfile.TemporaryDirectory(prefix="podium-fuzz-") as tmp:
        file = Path(tmp) / "fuzzed.yaml"
        file.write_bytes(data)
        try:
            direct: DAG | None = load_yaml_dag(file)
        except YAMLDAGError as exc:
            direct = None
            assert exc.problems, "a YAMLDAGError without problems"
            for problem in exc.problems:
                assert isinstance(problem.line, int) and problem.line >= 1, problem
                assert isinstance(problem.column, int) and problem.column >= 1, problem
                assert problem.message.strip(), problem
                assert not INTERNAL.search(problem.message), problem
            assert str(exc).startswith(f"{file}:{exc.problems[0].line}:")
        loaded = load_dags(file)  # what `podium run` and `podium validate` do; never raises
    if direct is None:
        assert loaded.dags == [] and loaded.errors
        for error in loaded.errors:
            assert error.line is not None and error.line >= 1, str(error)
            assert str(error).startswith(f"{file}:{error.line}"), str(error)
    else:
        assert loaded.errors == [], [str(e) for e in loaded.errors]
        assert [d.dag_id for d in loaded.dags] == [direct.dag_id]
        assert direct.tasks and set(direct.order) == set(direct.tasks)
    return loaded.dags


def _helpers_on_path() -> None:
    folder = Path(tempfile.gettempdir()) / "podium-fuzz-yaml-helpers"
    folder.mkdir(exist_ok=True)
    (folder / "fuzz_yaml_helpers.py").write_text(HELPERS)
    if str(folder) not in sys.path:
        sys.path.append(str(folder))


_helpers_on_path()


@settings(FUZZ, max_examples=150)
@given(data=files)
def test_any_file_gives_dags_or_errors_with_a_line_number(data: bytes) -> None:
    check_file(data)


@settings(FUZZ, max_examples=100)
@given(document=st.one_of(documents, valid_documents()))
def test_generated_documents_load_or_report_every_problem(document: Any) -> None:
    dags = check_file(dump(document).encode("utf-8"))
    if dags:  # what loaded is what the file says
        [dag] = dags
        tasks = document["tasks"]
        full = {str(t): f"{s['group']}.{t}" if s.get("group") else str(t) for t, s in tasks.items()}
        assert set(dag.tasks) == set(full.values())
        for task_id, spec in tasks.items():
            assert set(dag.tasks[full[task_id]].upstream) >= set(spec.get("depends_on") or ())


@FUZZ
@given(document=valid_documents())
def test_valid_documents_load(document: Any) -> None:
    [dag] = check_file(dump(document).encode("utf-8"))
    assert {t: set(n.upstream) for t, n in dag.tasks.items()} == {
        t: set(spec.get("depends_on", ())) | set(re.findall(r"tasks\.(\w+)\.result", str(spec)))
        for t, spec in document["tasks"].items()
    }


def test_valid_files_still_load() -> None:
    """The strategies reach the success path too, not only errors."""
    text = "tasks:\n  a: {shell: {argv: [echo, '{{ params.day }}']}}\n  b: {call: 'fuzz_yaml_helpers:step', depends_on: [a]}\n"
    [dag] = check_file(text.encode())
    assert dag.order == ["a", "b"]
