"""Benchmarks: `python -m lrtool.bench speed | prepare | suggest`.

A client of lrtool: it imports the library's workflows; nothing in lrtool imports it.

- speed (`speed.py`): time per step against a plain PyTorch loop.
- suggest (`suggest_quality.py`, `table.py`): how far each suggestion rule's rate lands from
  the best of a grid of one-cycle runs, on the tasks of `tasks.py`, with the design/held-out
  split fixed by a hash of each task's name. Runs are cached on disk (`cache.py`) and run in
  parallel worker processes (`runs.py`).
- prepare: fill the cache with the grids and range tests only.
"""
