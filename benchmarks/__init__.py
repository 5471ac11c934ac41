"""`make bench`: the hot endpoints under gunicorn (2 sync workers) on PostgreSQL and Redis, driven
by wrk on the same machine, each beside /healthz measured in the same run. See README
"Performance"."""
