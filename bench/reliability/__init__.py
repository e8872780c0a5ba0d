"""The reliability figures of issue 13 (`python -m bench.reliability`): service SIGKILL trials,
runner SIGKILL resume equality, cancels, the gRPC fuzz and the auth matrix, written to
docs/results/reliability.json with the machine and date. The pieces are shared with the chaos,
fuzz and security test suites (tests/chaos, tests/fuzz, tests/security), which run CI-sized
versions of the same code."""
