"""`python -m olivepipe.cli` (the package is imported first, so every command is registered)."""
from . import main

main()
