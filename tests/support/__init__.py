"""Helpers that more than one test module (or a bench) uses: fakes, clocks, waits, ports and harnesses.

A test module imports from here, never from another test module or a conftest; a conftest imports from
here to turn a helper into a fixture.
"""
