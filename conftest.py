"""Loaded for every test path, notebooks included."""

import os
import sys
from pathlib import Path

# Kernels and subprocesses find `course-ws` even when pytest runs outside `make test`.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
