"""`python -m olivepipe.cli`: as the console script (the no-op fast path first, then every command)."""
from ..fastpath import main

main()
