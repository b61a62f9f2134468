"""`python -m gatectl` is the `gatectl` command."""

import sys

from gatectl.cli import main

sys.exit(main())
