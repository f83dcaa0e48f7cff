"""Test settings through the environment, set before pytest-django loads Django.

Loaded with ``-p tests.pytest_env`` (see pyproject.toml), since conftest files load too late.
"""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "insecure-key-for-tests-only")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Tests must not pick up a developer's .env broker or database by accident.
os.environ.setdefault("MQTT_URL", "")
# The test database is a file of this run's own (settings.py says why), removed with its folder
# by the OS's temp cleaning; the history writer still runs in a thread, as the tests need.
os.environ.setdefault(
    "SQLITE_TEST_NAME", os.path.join(tempfile.mkdtemp(prefix="gooee-test-"), "test.sqlite3")
)
# The history writer: a thread, which the tests can wait on. Served
# dashboards (tests/served.py) run the default, a writer process.
os.environ.setdefault("HISTORY_WRITER", "thread")
