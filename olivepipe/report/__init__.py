"""Read-only views: plans, progress and results as text, markdown, JSON and HTML; graphs; show; compile preview."""
