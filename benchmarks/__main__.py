"""Run benchmarks and print JSON: ``python -m benchmarks [NAME ...] [--quick]``."""

from wardwatch.bench import main

raise SystemExit(main())
