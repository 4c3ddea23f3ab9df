"""The `tuneserve` HTTP client commands: files, jobs, models and predict against a server."""
