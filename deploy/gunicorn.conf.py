"""gunicorn settings. The app (and the dlib models) load once in the master, before
the workers fork, so workers share the model memory copy-on-write."""

import glob
import os
import shutil
import tempfile

bind = os.environ.get("FACEAPI_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("FACEAPI_WORKERS", "2"))
threads = int(os.environ.get("FACEAPI_THREADS", "1"))
preload_app = True
timeout = int(os.environ.get("FACEAPI_TIMEOUT", "60"))
graceful_timeout = 30
# gunicorn >= 25 opens a control socket at $HOME/.gunicorn/gunicorn.ctl by default: one
# path shared by every gunicorn of the user (a second instance takes it over from the
# first), and unwritable on a read-only root filesystem. Workers are managed by the
# orchestrator here, so it stays off.
control_socket_disable = True
# Our own request log line (with request id, route, status, duration) replaces
# gunicorn's access log.
accesslog = None
errorlog = "-"
loglevel = "info"
# Bodies above this are refused before the app reads them (3 images of 5 MB, base64).
limit_request_line = 8190

# Prometheus multiprocess mode (docs/operations.md, "Metrics"): every worker keeps its
# counters in files under PROMETHEUS_MULTIPROC_DIR and /metrics sums them. It must be set
# here, before the app (and prometheus_client) is imported. A directory given from
# outside is emptied of the last run's files; otherwise a fresh one is made and removed
# on exit.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
_own_metrics_dir = not _metrics_dir
if _own_metrics_dir:
    _metrics_dir = tempfile.mkdtemp(prefix="faceapi-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
else:
    os.makedirs(_metrics_dir, exist_ok=True)
    for _stale in glob.glob(os.path.join(_metrics_dir, "*.db")):
        os.remove(_stale)

# A second address that serves /metrics alone, without a key (FACEAPI_METRICS_BIND).
_metrics_bind = os.environ.get("FACEAPI_METRICS_BIND", "")
if _metrics_bind:
    bind = [bind, _metrics_bind]


def child_exit(server, worker):
    """A worker's live gauges must not outlive it (its counters stay in the sum)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
