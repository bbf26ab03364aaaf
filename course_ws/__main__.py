"""``python -m course_ws`` is the ``course-ws`` command."""

import sys

from course_ws.cli import main

sys.exit(main())
