"""YAML DAG files: every kind of error with its exact message and position, and what a valid file
compiles to."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from engine import DAG, TriggerRule
from engine.yaml_dags import YAMLDAGError, load_yaml_dag
from engine.yaml_spec import json_schema
from sensors import AfterDag, Cron, Every, KafkaTopic, S3Events

HELPERS = """
from engine import task

def load(path: str, limit: int = 1) -> str:
    return f"{path}:{limit}"

@task(retries=9)
def decorated(x: int) -> int:
    return x

not_a_function = 3
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "yaml_helpers.py").write_text(HELPERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write(folder: Path, text: str, name: str = "dag.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems(folder: Path, text: str) -> list[str]:
    """``line:column: path: message`` for each problem of the file."""
    with pytest.raises(YAMLDAGError) as caught:
        load_yaml_dag(write(folder, text))
    return [f"{p.line}:{p.column}: {p}" for p in caught.value.problems]


VALID = """
dag_id: nightly
description: one day of orders
tags: [sales]
params:
  day: {type: string, default: "2026-11-25"}
  limit: {type: integer, default: 10}
  ratio: {type: number, default: 1}
  dry: {type: boolean, default: false}
  region: {type: string}
triggers:
  - cron: {schedule: "0 4 * * *", tz: Europe/Berlin, catchup: none}
  - every: {seconds: 300}
  - kafka: {topic: orders, group_id: g}
  - s3: {bucket: landing, prefix: crm/}
  - after: {dag: upstream, state: any}
max_active_runs: 2
defaults:
  retries: 2
  timeout: 60
  pool: db
tasks:
  extract:
    shell:
      argv: [echo, "day={{ params.day }}", plain.sh]
      env: {MODE: "{{ params.region }}"}
  load:
    call: yaml_helpers:load
    args: {path: "s3://landing/{{ params.day }}/", limit: 3}
    depends_on: [extract]
    retries: 0
    trigger_rule: all_done
  ping:
    http: {url: "http://127.0.0.1:1/{{ ds }}", method: POST, json: {day: "{{ params.day }}"}}
    depends_on: [extract, load]
  typed:
    call: yaml_helpers:decorated
    args: {x: 1}
"""


def test_a_valid_file_compiles_to_a_dag(folder: Path) -> None:
    d = load_yaml_dag(write(folder, VALID))
    assert isinstance(d, DAG)
    assert d.dag_id == "nightly" and d.description == "one day of orders" and d.tags == ("sales",)
    assert d.source_file == str(folder / "dag.yaml")
    assert d.max_active_runs == 2
    assert d.order == ["extract", "typed", "load", "ping"]
    assert d.tasks["ping"].upstream == ("extract", "load")
    assert {n: (p.default, p.required, p.annotation) for n, p in d.params.items()} == {
        "day": ("2026-11-25", False, str),
        "limit": (10, False, int),
        "ratio": (1, False, float),
        "dry": (False, False, bool),
        "region": (None, True, str),
    }
    assert d.validate_params({"region": "eu", "limit": "5"})["limit"] == 5
    kinds = [type(t) for t in d.triggers]
    assert kinds == [Cron, Every, KafkaTopic, S3Events, AfterDag]
    load, extract = d.tasks["load"], d.tasks["extract"]
    assert (load.options.retry.retries, load.options.timeout, load.options.pool) == (0, 60, "db")
    assert load.options.trigger_rule is TriggerRule.ALL_DONE
    assert extract.options.retry.retries == 2
    # defaults, not the @task options, apply to a @task function called from YAML
    assert d.tasks["typed"].options.retry.retries == 2
    # template syntax makes a Template; a plain string (even one ending in .sh) stays a string
    assert load.templated and extract.templated and not d.tasks["typed"].templated
    argv = extract.args[0].value
    assert repr(argv[1]) == "Template('day={{ params.day }}')" and argv[2] == "plain.sh"


def test_dag_id_defaults_to_the_file_name(folder: Path) -> None:
    d = load_yaml_dag(write(folder, "tasks:\n  a: {shell: {argv: [echo]}}\n", "my_dag.yml"))
    assert d.dag_id == "my_dag"


def test_yaml_syntax_error(folder: Path) -> None:
    assert problems(folder, "tasks:\n  a: [1, 2\n  b: 3\n") == [
        "3:4: YAML syntax error: expected ',' or ']', but got ':'"
    ]


def test_duplicate_key(folder: Path) -> None:
    text = """
    tasks:
      a: {shell: {argv: [echo]}}
      a: {shell: {argv: [echo, x]}}
    """
    assert problems(folder, text) == ["3:3: tasks.a: duplicate key (first at line 2)"]


def test_not_a_mapping(folder: Path) -> None:
    assert problems(folder, "- a\n- b\n") == ["1:1: a DAG file is a mapping, this one is a list"]
    assert problems(folder, "") == ["1:1: a DAG file is a mapping, this one is empty"]


def test_shape_errors_each_with_its_line(folder: Path) -> None:
    text = """
    dag_id: bad/id
    descripton: x
    params:
      day: {type: date}
      n: {type: integer, default: "3"}
    defaults: {retries: "3"}
    triggers:
      - cron: "0 4 * * *"
      - {}
      - every: {seconds: 0}
    tasks:
      a:
        retries: -1
        timeout: 0
        call: not-a-target
      b: {}
      c:
        shell: {argv: []}
      d:
        http: {url: "http://x", method: FETCH, expect_status: [99]}
        trigger_rule: sometimes
        concurrency: 0
      e:
        shell: {argv: [sleep, 1]}
        args: {x: 1}
    """
    assert problems(folder, text) == [
        "1:1: dag_id: must not contain '/'",
        "2:1: descripton: unknown key 'descripton' (did you mean 'description'?)",
        "4:9: params.day.type: must be one of: string, integer, number, boolean, list or object",
        "5:3: params.n: default '3' is not of type integer",
        "6:12: defaults.retries: must be an integer >= 0",
        "8:5: triggers[0].cron: must be a mapping (keys: schedule, tz, catchup)",
        "9:5: triggers[1]: a trigger has exactly one of cron, every, kafka, s3, after (got none)",
        "10:13: triggers[2].every.seconds: must be a number of seconds > 0",
        "13:5: tasks.a.retries: must be an integer >= 0",
        "14:5: tasks.a.timeout: must be a number of seconds > 0",
        "15:5: tasks.a.call: must be 'module:function' (e.g. 'pipelines.steps:load')",
        "16:3: tasks.b: a task has exactly one of call, shell, http (got none)",
        "18:13: tasks.c.shell.argv: must not be empty",
        "20:29: tasks.d.http.method: must be one of: GET, POST, PUT, PATCH, DELETE or HEAD",
        "20:60: tasks.d.http.expect_status[0]: must be >= 100",
        "21:5: tasks.d.trigger_rule: must be one of: all_success, all_failed, all_done, "
        "one_success, one_failed, none_failed or always",
        "22:5: tasks.d.concurrency: must be an integer >= 1",
        "23:3: tasks.e: args go with call (a Python function)",
    ]


def test_missing_tasks_and_missing_keys(folder: Path) -> None:
    assert problems(folder, "dag_id: x\n") == ["1:1: tasks: required"]
    text = """
    tasks:
      a:
        http: {method: GET}
    """
    assert problems(folder, text) == ["3:5: tasks.a.http.url: required"]


def test_unknown_keys_deep_down_with_did_you_mean(folder: Path) -> None:
    text = """
    tasks:
      a:
        shell: {argv: [echo], enviroment: {}}
        retires: 3
    """
    assert problems(folder, text) == [
        "3:27: tasks.a.shell.enviroment: unknown key 'enviroment' (known: argv, env, cwd, timeout)",
        "4:5: tasks.a.retires: unknown key 'retires' (did you mean 'retries'?)",
    ]


def test_dependency_errors(folder: Path) -> None:
    text = """
    tasks:
      extract: {shell: {argv: [echo]}}
      load:
        shell: {argv: [echo]}
        depends_on: [extrct, transform]
      transform:
        shell: {argv: [echo]}
        depends_on: [load]
      self:
        shell: {argv: [echo]}
        depends_on: [self]
    """
    assert problems(folder, text) == [
        "5:5: tasks.load.depends_on: cycle load -> transform -> load",
        "5:18: tasks.load.depends_on[0]: unknown task 'extrct' (did you mean 'extract'?)",
        "11:18: tasks.self.depends_on[0]: a task cannot depend on itself",
    ]


def test_call_errors(folder: Path) -> None:
    text = """
    tasks:
      a: {call: "no_such_module_xyz:f"}
      b: {call: "yaml_helpers:laod"}
      c: {call: "yaml_helpers:not_a_function"}
      d:
        call: yaml_helpers:load
        args: {limit: 2}
      e:
        call: yaml_helpers:load
        args: {path: x, nope: 1}
    """
    assert problems(folder, text) == [
        "2:7: tasks.a.call: cannot import module 'no_such_module_xyz': "
        "ModuleNotFoundError: No module named 'no_such_module_xyz'",
        "3:7: tasks.b.call: module 'yaml_helpers' has no function 'laod' (did you mean 'load'?)",
        "4:7: tasks.c.call: 'yaml_helpers:not_a_function' is not a function",
        "7:5: tasks.d.args: missing argument(s) path",
        "10:5: tasks.e.args: got an unexpected keyword argument 'nope'",
    ]


def test_template_and_trigger_errors(folder: Path) -> None:
    text = """
    triggers:
      - cron: {schedule: "0 4 * * *", tz: Mars/Olympus}
      - cron: {schedule: "every day"}
    tasks:
      a:
        shell: {argv: [echo, "{{ params.day"]}
    """
    assert problems(folder, text) == [
        "2:5: triggers[0].cron: unknown time zone 'Mars/Olympus' (expected an IANA name such as 'UTC')",
        "3:5: triggers[1].cron: " + _cron_error("every day"),
        "6:26: tasks.a.shell.argv[1]: invalid template '{{ params.day': unexpected end of "
        "template, expected 'end of print statement' (template line 1)",
    ]


def _cron_error(expr: str) -> str:
    from engine import TriggerError

    try:
        Cron(expr)
    except TriggerError as exc:
        return str(exc)
    raise AssertionError("expected an error")


def test_shape_errors_do_not_hide_the_meaning_errors_of_the_same_task(folder: Path) -> None:
    text = """
    tasks:
      load:
        call: yaml_helpers:laod
        retires: 3
    """
    assert problems(folder, text) == [
        "3:5: tasks.load.call: module 'yaml_helpers' has no function 'laod' (did you mean 'load'?)",
        "4:5: tasks.load.retires: unknown key 'retires' (did you mean 'retries'?)",
    ]


def test_the_error_message_lists_every_problem_with_file_line_column(folder: Path) -> None:
    path = write(folder, "tasks:\n  a: {retries: -1, shell: {argv: [echo]}}\n  b: {}\n")
    with pytest.raises(YAMLDAGError) as caught:
        load_yaml_dag(path)
    assert str(caught.value) == (
        f"{path}:2:7: tasks.a.retries: must be an integer >= 0\n"
        f"{path}:3:3: tasks.b: a task has exactly one of call, shell, http (got none)"
    )


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = Path(__file__).parents[2] / "docs" / "podium-dag.schema.json"
    assert json.loads(committed.read_text()) == json_schema()


def test_schema_describes_the_file() -> None:
    schema = json_schema()
    assert schema["required"] == ["tasks"]
    assert schema["additionalProperties"] is False
    task = schema["$defs"]["TaskSpec"]["properties"]
    assert task["retries"]["anyOf"][0] == {"minimum": 0, "type": "integer"}
    assert "json" in schema["$defs"]["HttpSpec"]["properties"]


def test_data_edges_map_and_group_errors_each_with_its_line(folder: Path) -> None:
    text = """
    tasks:
      extract:
        call: yaml_helpers:load
        args: {path: "{{ tasks.lodd.result }}"}
      load:
        call: yaml_helpers:load
        map: {path: "{{ tasks.extrct.result }}", limit: "x {{ params.n }}", nope: [1]}
      a.b:
        call: yaml_helpers:load
        args: {path: x}
      c:
        call: yaml_helpers:load
        args: {path: "{{ tasks.d.result }}"}
      d:
        group: grp
        call: yaml_helpers:load
        args: {path: "{{ tasks.c.result }}"}
      e:
        shell: {argv: [echo]}
        map: {argv: [[a]]}
      f:
        call: yaml_helpers:load
        map: {path: [a]}
        args: {path: b}
      g:
        group: "bad group"
        call: yaml_helpers:load
        args: {path: "{{ tasks.g.result }}"}
    """
    assert problems(folder, text) == [
        "4:12: tasks.extract.args.path: unknown task 'lodd' (did you mean 'load'?)",
        "7:11: tasks.load.map.path: unknown task 'extrct' (did you mean 'extract'?)",
        "7:46: tasks.load.map.limit: map takes a list, '{{ tasks.<id>.result }}' or "
        "'{{ params.<name> }}' (one expression), got 'x {{ params.n }}'",
        "7:73: tasks.load.map.nope: yaml_helpers:load has no parameter 'nope' "
        "(it takes path, limit)",
        "8:3: tasks.a.b: a task key has no '.' or '[' (to put a task in a group, give it group:)",
        "13:12: tasks.c.args.path: unknown task 'd' "
        "(did you mean 'grp.d'? a task in a group is named by its full id)",
        "18:3: tasks.e: map goes with call "
        "(to map a command, call 'engine.steps:shell' with map: argv)",
        "21:3: tasks.f: path is both in map and in args (pick one)",
        "26:5: tasks.g.group: must be names of letters, digits, '_' or '-' joined by '.' "
        "(e.g. 'load.eu')",
        "28:12: tasks.g.args.path: a task cannot depend on itself",
    ]


def test_a_cycle_through_results_is_reported(folder: Path) -> None:
    text = """
    tasks:
      a:
        call: yaml_helpers:load
        args: {path: "{{ tasks.b.result }}"}
      b:
        call: yaml_helpers:load
        depends_on: [a]
        args: {path: x}
    """
    assert problems(folder, text) == ["2:3: tasks.a.depends_on: cycle a -> b -> a"]


def test_data_edges_map_and_groups_compile(folder: Path) -> None:
    text = """
    params:
      files: {type: list, default: [a.csv, b.csv]}
      options: {type: object, default: {mode: fast}}
    tasks:
      gzip:
        group: pack
        call: engine.steps:shell
        map: {argv: "{{ params.files | map('list') | list }}"}
      load:
        group: load.eu
        call: yaml_helpers:load
        map: {path: "{{ tasks['pack.gzip'].result }}"}
        args: {limit: "{{ params.options.mode | length }}"}
      report:
        call: yaml_helpers:load
        args: {path: "rows: {{ tasks.load.eu.load.result | length }}"}
    """
    nightly = load_yaml_dag(write(folder, text))
    assert sorted(nightly.tasks) == ["load.eu.load", "pack.gzip", "report"]
    assert nightly.tasks["load.eu.load"].group == "load.eu"
    assert nightly.tasks["load.eu.load"].mapped == ("path",)
    assert nightly.tasks["load.eu.load"].data_upstream == {"pack.gzip"}
    assert nightly.tasks["report"].data_upstream == {"load.eu.load"}
    assert nightly.tasks["pack.gzip"].mapped == ("argv",)
    assert nightly.params["files"].annotation is list
    assert nightly.validate_params({"files": '["x"]'})["files"] == ["x"]
    with pytest.raises(Exception, match=r"param 'files' expects list \(as JSON\), got 'x,y'"):
        nightly.validate_params({"files": "x,y"})


def test_a_key_that_is_a_list_is_reported_where_it_is(folder: Path) -> None:
    text = """
    tasks:
      ? [a, b]
      : {shell: {argv: [echo]}}
    """
    assert problems(folder, text) == ["2:5: tasks: a key must be a name, not a list or mapping"]


def test_a_python_tag_is_refused_where_it_is(folder: Path) -> None:
    text = """
    tasks:
      a: !!python/object:os.system {}
    """
    assert problems(folder, text) == [
        "2:6: YAML error: unsupported tag 'tag:yaml.org,2002:python/object:os.system'"
    ]
