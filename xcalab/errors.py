"""The one exception type xcalab raises for bad input."""

from __future__ import annotations

from pathlib import Path


class XcalabInputError(ValueError):
    """Bad input: a file, folder, array or annotation that xcalab cannot use.

    The message always names *what* (the file, folder or video id) and *the problem*,
    so a user can fix it without reading a traceback::

        XcalabInputError: cine.dcm: not an X-ray angiography image (Modality is 'CT', expected 'XA')
    """

    def __init__(self, where: str | Path, problem: str):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")
