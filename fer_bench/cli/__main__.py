"""`python -m fer_bench.cli`, as before the split (`python -m fer_bench` is the usual spelling)."""

import sys

from fer_bench.cli import main

sys.exit(main())
