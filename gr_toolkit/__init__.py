"""gr-toolkit."""
