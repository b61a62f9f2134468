"""`python -m gatectl` is the `gatectl` command."""

import sys

from gatectl.cli.main import main

sys.exit(main())
