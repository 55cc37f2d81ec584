"""Paper-style tables (and later figures) from tracked runs."""
