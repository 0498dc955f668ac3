"""Side-by-side benchmarks: Podium, the asyncio+sqlite3 floor, Prefect, Dagster, DBOS and Airflow
on the workloads of ``benchmarks/``, each tool in its own virtualenv (``python -m benchmarks.compare``)."""
