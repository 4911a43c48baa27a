"""Reproduction harness: complexity counting, the FPS protocol and the results store.

Submodules are imported where used (``mamkpd.harness.fps``, ``mamkpd.harness.results``, ...), so
that reading the store never pulls in the models.
"""
