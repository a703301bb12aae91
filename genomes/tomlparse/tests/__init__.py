# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: 2021 Taneli Hukkinen
# Licensed to PSF under a Contributor Agreement.
#
# CPython 3.11.7's Lib/test/test_tomllib/__init__.py, with its own one documented change
# ("By changing this one line, we can run the tests against a different module name") and
# CPython's test.support loader dropped: `unittest discover` finds the test_*.py files.

__all__ = ("tomllib",)

# By changing this one line, we can run the tests against
# a different module name.
import tomlparse as tomllib
