"""A workflow opened for work (Workspace), its plan, the scheduler that applies it, and what compares runs: metrics, review, variants."""
