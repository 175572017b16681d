"""`python -m olivepipe.cli`: as the console script (fast path first, then every command)."""
from .entry import main

main()
