"""Papers in: sources (files, feeds, listing), tagging, and the store."""
