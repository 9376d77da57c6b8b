"""`python -m benchmarks.gpu_suite`: see benchmarks/gpu_suite/__init__.py and benchmarks/README.md."""

from benchmarks.gpu_suite.runner import main

raise SystemExit(main())
