"""``python -m examples.customer_analytics_yaml`` (``make demo-yaml``): run the YAML pipeline once and
print the same summary as the Python one (``python -m examples.customer_analytics``).

Options and exit codes are the Python demo's: ``--day YYYY-MM-DD``, ``--output-dir DIR`` (default
``examples/customer_analytics_yaml/output/``); 0 if the run succeeded, 1 if it failed, 2 if it could
not run.
"""

from __future__ import annotations

import sys

from examples.customer_analytics.__main__ import main

from . import OUTPUT_DIR, load_dag

if __name__ == "__main__":
    sys.exit(
        main(
            prog="python -m examples.customer_analytics_yaml", dag=load_dag(), output_dir=OUTPUT_DIR
        )
    )
