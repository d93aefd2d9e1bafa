"""gunicorn settings. The app (and the dlib models) load once in the master, before
the workers fork, so workers share the model memory copy-on-write."""

import os

bind = os.environ.get("FACEAPI_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("FACEAPI_WORKERS", "2"))
threads = int(os.environ.get("FACEAPI_THREADS", "1"))
preload_app = True
timeout = int(os.environ.get("FACEAPI_TIMEOUT", "60"))
graceful_timeout = 30
# Our own request log line (with request id, route, status, duration) replaces
# gunicorn's access log.
accesslog = None
errorlog = "-"
loglevel = "info"
# Bodies above this are refused before the app reads them (3 images of 5 MB, base64).
limit_request_line = 8190
