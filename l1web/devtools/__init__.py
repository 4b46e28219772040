"""Tools for running L1 beside its helpers: the launcher (`make run`), the tests and the benchmarks."""
