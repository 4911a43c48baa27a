"""Paper rows as tests, recorded in the results store (a package, so that its helper modules import by name)."""
