"""Tests of the HTTP server (`ofa serve`): a package, so its conftest does not shadow the
suite's top-level ``conftest`` module that other tests import helpers from."""
