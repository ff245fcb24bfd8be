"""`python -m taxi_pipeline`: the command line."""

import sys

from taxi_pipeline.cli import main

if __name__ == "__main__":  # not when a worker process (`taxi_pipeline.workers`) imports it
    sys.exit(main())
