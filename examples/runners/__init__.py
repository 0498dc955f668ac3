"""The runners example: ``pipeline.access_logs`` parses a day of access logs on ``Process(workers=2)``
and runs one legacy step in a ``Virtualenv`` pinned to an old library.

This package's ``__init__`` imports nothing: the virtualenv imports it on the way to
``legacy_clients``, and the virtualenv has no engine. Import the DAG from ``.pipeline``.
"""
