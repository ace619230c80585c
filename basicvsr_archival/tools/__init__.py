"""The command-line tools: each module has ``main(argv)``, run by a console script (``commands.py``).

The scripts in ``tools/`` and ``demo/`` are thin wrappers of the same ``main``
(``python tools/archive.py ...`` = ``basicvsr-archive ...``).
"""
