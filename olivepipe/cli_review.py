"""Review commands (diff, fmt) register here on the main CLI group."""
