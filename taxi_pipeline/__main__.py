"""`python -m taxi_pipeline`: the command line."""

import sys

from taxi_pipeline.cli import main

sys.exit(main())
