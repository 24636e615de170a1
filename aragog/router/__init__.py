"""One-time router: at a request's arrival, predict the set C(r) of configurations that keep
it as accurate as the all-largest configuration (DESIGN.md §1).

Layers, imports flowing down: ``service`` (async, budgeted) → ``artifact`` → ``decision`` /
``mlp`` / ``embedders`` (pure or edge I/O); offline: ``cli`` → ``train`` / ``evaluate`` →
``labels`` / ``builders`` → ``rules``.
"""
