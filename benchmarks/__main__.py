"""Run benchmarks and print JSON: ``python -m benchmarks [NAME ...] [--quick]``."""

from benchmarks.run import main

raise SystemExit(main())
