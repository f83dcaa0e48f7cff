"""``python -m bench.serve_variant VARIANT serve --port P``: ``manage.py`` with a prototype fix
from ``bench/experiments.py`` applied to the server first (the product code is not changed)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    variant, *argv = sys.argv[1:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gooee_site.settings")
    import daphne.server  # noqa: F401 - installs Twisted's asyncio reactor before anything else
    import django

    django.setup()
    from bench import experiments

    experiments.apply_server(variant)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *argv])


if __name__ == "__main__":
    main()
