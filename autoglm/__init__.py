"""The import path of the seed article's chapter 3.3 (``from autoglm.task import AutoTask``).

The SDK lives in :mod:`openautoglm`; this package only names its ``AutoTask`` where the article does.
"""
