"""course-ws."""
