"""Models from other libraries behind rsexp's registries (loaded as built-in plugins)."""
