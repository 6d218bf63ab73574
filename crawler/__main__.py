"""``python -m crawler`` is ``pressarchive``."""

from crawler.cli import main

main()
