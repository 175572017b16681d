"""Workflow file -> validated Workflow -> typed steps and their graph."""
