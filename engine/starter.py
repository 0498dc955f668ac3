"""``podium init DIR``: a small project that runs as written — a Python DAG, a YAML DAG calling a
Python function and a shell step, the JSON Schema for editors, and a README with the commands.

``podium init DIR --template cron|kafka|s3|assets``: a project around one kind of trigger, with a
pytest test that runs it on a real engine and a sample event (``engine.starter_templates``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import PodiumError
from .starter_templates import TEMPLATES
from .yaml_spec import json_schema

STARTER_TEMPLATES = tuple(TEMPLATES)

HELLO_PY = '''\
"""A Python DAG: `podium trigger hello --path pipelines --wait`."""

from engine import Template, dag, task


@task
async def greet(name: str) -> str:
    return f"hello {name}"


@task
def shout(text: str, where: str) -> str:  # a sync task runs in a worker thread
    return f"{text.upper()}! ({where})"


@dag(description="Greets someone, then shouts it")
def hello(name: str = "world") -> None:
    shout(greet(name), Template("run {{ run_id }} of {{ dag_id }}"))
'''

REPORT_STEPS_PY = '''\
"""Python functions the YAML DAG calls (`call: report_steps:count_words`); no DAG here."""


def count_words(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return counts
'''

REPORT_YAML = """\
# yaml-language-server: $schema=../podium-dag.schema.json
# A YAML DAG: `podium trigger report --path pipelines --wait`. Reference: `podium schema`.
dag_id: report
description: Counts the words of a text, then announces the day's report
params:
  day: {type: string, default: "2026-01-01"}
  text: {type: string, default: "to be or not to be"}
defaults:
  retries: 1
  timeout: 60
tasks:
  count:
    call: report_steps:count_words
    args:
      text: "{{ params.text }}"
  announce:
    depends_on: [count]
    shell:
      argv: [echo, "report for {{ params.day | ds }} (run {{ run_id }})"]
"""

README = """\
# {name}

A Podium project: `pipelines/hello.py` (a Python DAG) and `pipelines/report.yaml` (a YAML DAG that
calls `pipelines/report_steps.py` and runs a shell step).

```sh
podium run pipelines/ --db podium.db                       # serve every DAG until Ctrl-C
podium trigger report --db podium.db --param day=2026-11-25 --wait   # in another terminal
```

Without a serving engine, `podium trigger hello --path pipelines --db podium.db --wait` runs a DAG
right there. `podium validate pipelines/` checks every file without running anything (exit 1 on
errors, for CI); `podium runs --db podium.db` and `podium logs RUN TASK --db podium.db` show what
ran. Editors that read JSON Schema complete and check the YAML with `podium-dag.schema.json`
(regenerate it with `podium schema > podium-dag.schema.json`).
"""


def starter_files(name: str, template: str | None = None) -> dict[str, str]:
    """The starter project's files by relative path (``template``: one of ``STARTER_TEMPLATES``)."""
    if template is not None:
        if template not in TEMPLATES:
            known = ", ".join(STARTER_TEMPLATES)
            raise PodiumError(f"unknown starter template {template!r} (one of: {known})")
        files = {rel: text.replace("{name}", name) for rel, text in TEMPLATES[template].items()}
        if any(rel.endswith((".yaml", ".yml")) for rel in files):
            files["podium-dag.schema.json"] = json.dumps(json_schema(), indent=2) + "\n"
        return files
    return {
        "README.md": README.format(name=name),
        "podium-dag.schema.json": json.dumps(json_schema(), indent=2) + "\n",
        "pipelines/hello.py": HELLO_PY,
        "pipelines/report.yaml": REPORT_YAML,
        "pipelines/report_steps.py": REPORT_STEPS_PY,
    }


def write_starter(directory: str | Path, template: str | None = None) -> list[Path]:
    """Write the starter project into ``directory`` (created if needed); never overwrites a file."""
    root = Path(directory)
    files = starter_files(root.resolve().name or "podium-project", template)
    existing = [rel for rel in files if (root / rel).exists()]
    if existing:
        raise PodiumError(f"{root}: would overwrite {', '.join(existing)}; choose an empty folder")
    written: list[Path] = []
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
