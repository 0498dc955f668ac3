"""The mobile team's client-version ladder: a step kept as it was written, against packaging 21.

It ranks the app builds seen in the day's traffic, per platform, oldest first, with
``packaging.version.parse``. In packaging < 22, ``parse`` returns a ``LegacyVersion`` for a string
PEP 440 does not allow (hotfix and nightly builds: ``3.5.2-hotfix_4``, ``nightly-20261124``), and a
``LegacyVersion`` sorts below every real version: those builds head the "oldest in use" list, which
is what the support policy wants (an unofficial build is the first to be told to update).
packaging 22 removed ``LegacyVersion`` (such a string raises ``InvalidVersion``), so this step runs
in a virtualenv pinned to ``packaging==21.3`` (``Virtualenv(requirements=[...])`` in
``pipeline.py``) instead of being rewritten, whatever packaging the engine has.

This module must not import the engine: the virtualenv does not have it (docs/runners.md). The engine
imports the module too, to name the function in the DAG, and its packaging has no ``LegacyVersion``,
so packaging is imported inside the function.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from collections import Counter, defaultdict
from typing import Any


def client_versions(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The builds of each platform, oldest first, with their request counts; which of them are
    legacy (non-PEP 440) builds; and the facts of the environment this ran in."""
    import packaging
    from packaging.version import LegacyVersion, parse

    seen: Counter[str] = Counter()
    for chunk in chunks:
        seen.update(chunk["clients"])
    builds: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for client, requests in seen.items():
        name, _, version = client.partition("/")
        builds[name][version] = requests

    platforms = {}
    with warnings.catch_warnings():
        # packaging 21 warns that LegacyVersion will go: that is why this step is pinned
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, versions in sorted(builds.items()):
            ladder = sorted(versions, key=parse)
            legacy = [v for v in ladder if isinstance(parse(v), LegacyVersion)]
            platforms[name] = {
                "ladder": [[v, versions[v]] for v in ladder],
                "legacy": legacy,
                "requests": sum(versions.values()),
                "legacy_requests": sum(versions[v] for v in legacy),
            }
    return {
        "platforms": platforms,
        "packaging": packaging.__version__,
        "python": platform.python_version(),
        "prefix": sys.prefix,
        "pid": os.getpid(),
    }
