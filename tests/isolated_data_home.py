"""A test run keeps the course's data (the channels server's database) in a folder of its own.

Imported by ``conftest.py`` before anything imports ``course_ws``: the channels
server's default database lives under ``XDG_DATA_HOME``, read when
``course_ws.options`` is imported, and Django's settings are global to the
process. Servers started as subprocesses and notebook kernels inherit the
variable, so nothing a test run does lands in the user's own folder.
"""

import atexit
import os
import shutil
import tempfile

DATA_HOME = tempfile.mkdtemp(prefix="course-ws-test-data-")
os.environ["XDG_DATA_HOME"] = DATA_HOME
atexit.register(shutil.rmtree, DATA_HOME, ignore_errors=True)
