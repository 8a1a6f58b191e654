"""The production layout (nginx in front of gunicorn) and the tools that attack it."""
