"""Rate limits, concurrency limits and token budgets: the admit stage and its settlement."""
