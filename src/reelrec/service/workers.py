"""``reelrec serve --workers N``: several uvicorn worker processes over one run.

``reelrec serve`` checks the port, the run and the store once, then becomes (``exec``) a lean
supervisor of ``N`` worker processes (:mod:`reelrec.service.supervisor`; see :func:`serve`).
Each worker (:func:`run_worker`) builds the app with :func:`app_from_env` (an import-string
factory), reading its settings from the ``REELREC_SERVE_CONFIG`` environment variable (JSON) and
the admin token from ``REELREC_ADMIN_TOKEN``, then listens on its own ``SO_REUSEPORT`` socket on
the shared port, so the kernel spreads connections over the workers (uvicorn's own
multi-process mode, where every worker accepts from one socket and the first to wake takes all
pending connections, is the fallback where that is not available).

What the workers share:

* **the model weights**, read-only: the safetensors files are memory-mapped (see
  :func:`reelrec.artifacts.load_state`), so the page cache holds one copy of the tables for all
  workers; each worker adds its own Python objects (lookups, catalogue) and interpreter;
* **the ratings store**: SQLite in WAL mode with ``synchronous=FULL`` and a busy timeout, so
  writes from several processes queue for the lock and each is on disk before its answer
  leaves (a server database works the same way);
* **the served run**: ``POST /admin/reload`` lands on one worker, which loads the run, swaps
  it in and then publishes it in a small generation file (``run.json`` in a private
  temporary folder of the parent). Every worker polls that file every
  :data:`POLL_SECONDS` and loads a newer generation aside before swapping it in, so the
  others follow within about a second without dropping requests; a worker that uvicorn
  restarts starts on the latest generation.

``/metrics`` counts the requests of the worker that answers it; every answer carries the
worker's process id in the ``X-Reelrec-Worker`` header.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelrec.errors import ReelrecError

log = logging.getLogger(__name__)

#: environment variable carrying :class:`ServeConfig` (JSON) to the workers
CONFIG_ENV = "REELREC_SERVE_CONFIG"
#: environment variable carrying the admin token (as for ``reelrec serve`` itself)
TOKEN_ENV = "REELREC_ADMIN_TOKEN"
#: how often a worker looks for a run published by another worker's reload
POLL_SECONDS = 0.25
WORKER_HEADER = b"x-reelrec-worker"
#: how long uvicorn's parent waits for a worker to answer its liveness ping before it kills and
#: replaces it (uvicorn's default, 5 s, is shorter than importing torch takes on a busy machine:
#: workers were seen killed while starting, over and over)
HEALTHCHECK_SECONDS = 60
#: pending connections each worker's socket holds (uvicorn's default)
LISTEN_BACKLOG = 2048
#: Linux ``prctl`` option: the signal a process gets when its parent dies
PR_SET_PDEATHSIG = 1


@dataclass
class ServeConfig:
    """What every worker needs to build the same app (the admin token travels apart)."""

    run_dir: str
    store: str
    ann: bool = False
    threads: int = 1
    state_dir: str | None = None  # where the generation file lives (several workers only)


def default_workers() -> int:
    """The number of cores this process may run on (at least 1): one worker per core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def limit_threads(threads: int) -> Any:
    """One worker's torch and BLAS threads (per-request algebra is tiny; extra threads cost more
    than they save). Returns the BLAS limiter, which must be kept alive."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(max(1, threads))
    return threadpool_limits(limits=max(1, threads))


class WorkerHeader:
    """Pure-ASGI middleware: ``X-Reelrec-Worker: <pid>`` on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.value = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_pid(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (WORKER_HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, send_with_pid)


class RunSync:
    """Keeps one service's workers on the same run through a generation file (see the module)."""

    def __init__(self, app: Any, state_dir: str | Path, ann: bool, generation: int = 0) -> None:
        self.app = app
        self.ann = ann
        self.path = Path(state_dir) / "run.json"
        self.lock_path = Path(state_dir) / "run.lock"
        self.generation = generation
        self.mutex = threading.Lock()
        self.stamp = self._stamp()
        self.stopped = threading.Event()

    @staticmethod
    def read(state_dir: str | Path) -> dict[str, Any]:
        """The published ``{"generation": int, "run": path}`` (empty before the first reload)."""
        try:
            data = json.loads((Path(state_dir) / "run.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def publish(self, fresh: Any) -> None:
        """Called by the reload endpoint after it swapped ``fresh`` in: the next generation."""
        import fcntl  # POSIX only, as uvicorn's multi-process mode is in practice

        with self.mutex, open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            generation = int(self.read(self.path.parent).get("generation", 0)) + 1
            tmp = self.path.with_name(f"run.json.{os.getpid()}")
            tmp.write_text(json.dumps({"generation": generation, "run": str(fresh.run_dir)}))
            os.replace(tmp, self.path)
            self.generation = generation
            self.stamp = self._stamp()
            self.app.state.served = fresh  # a follower's older swap may have landed meanwhile
        log.info("worker %d published run generation %d: %s", os.getpid(), generation, fresh.run_dir)

    def poll_once(self) -> bool:
        """Load and swap in a newer published run; ``True`` when it switched."""
        from reelrec.errors import ReelrecError
        from reelrec.service.state import Served

        stamp = self._stamp()
        if stamp is None or stamp == self.stamp:
            return False
        self.stamp = stamp
        data = self.read(self.path.parent)
        generation = int(data.get("generation", 0))
        if generation <= self.generation or not data.get("run"):
            return False
        try:
            with self.app.state.reload_lock:
                fresh = Served.load(data["run"], ann=self.ann)
        except (ReelrecError, OSError) as exc:
            log.error("worker %d cannot follow reload to %s: %s", os.getpid(), data["run"], exc)
            self.generation = generation  # do not retry the same generation
            return False
        with self.mutex:
            if generation <= self.generation:
                return False
            self.generation = generation
            self.app.state.served = fresh
        log.info("worker %d now serving %s (generation %d)", os.getpid(), fresh.run_dir, generation)
        return True

    def _loop(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            try:
                self.poll_once()
            except Exception:  # pragma: no cover - keep the follower alive, say why
                log.exception("run follower failed")

    def start(self) -> None:
        threading.Thread(target=self._loop, name="reelrec-run-sync", daemon=True).start()


def build_app(config: ServeConfig, admin_token: str | None) -> Any:
    """The app of one worker: :func:`reelrec.service.app.create_app` (the app the tests run, fast
    lane included) over the run of the latest published generation (else ``run_dir``), with
    the pid header and, with a ``state_dir``, the run follower."""
    from reelrec.service.app import create_app

    published = RunSync.read(config.state_dir) if config.state_dir else {}
    run_dir = published.get("run") or config.run_dir
    limiter = limit_threads(config.threads)
    app = create_app(run_dir, config.store, admin_token=admin_token, ann=config.ann)
    app.state.thread_limits = limiter
    app.add_middleware(WorkerHeader)
    if config.state_dir:
        sync = RunSync(app, config.state_dir, config.ann, int(published.get("generation", 0)))
        app.state.after_reload = sync.publish
        sync.start()
    return app


def app_from_env() -> Any:
    """The uvicorn factory of a worker process (``reelrec.service.workers:app_from_env``)."""
    config = ServeConfig(**json.loads(os.environ[CONFIG_ENV]))
    return build_app(config, os.environ.get(TOKEN_ENV) or None)


#: the supervisor a multi-worker service becomes (``exec``) where each worker cannot have its own
#: socket (not Linux): uvicorn's command line, then the private state folder removed; it imports
#: uvicorn only, so it holds no copy of torch or the run
SUPERVISOR = """import json, os, shutil, sys
import uvicorn
try:
    uvicorn.main(sys.argv[1:])
finally:
    shutil.rmtree(json.loads(os.environ["REELREC_SERVE_CONFIG"])["state_dir"], ignore_errors=True)
"""


def reuseport_available() -> bool:
    """Whether workers can each listen on the port (Linux ``SO_REUSEPORT``, which spreads
    connections over the sockets; other systems' ``SO_REUSEPORT`` does not balance)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that shares the port with the other workers'."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _end_with_parent() -> None:
    """Ask Linux to send this worker SIGTERM when its supervisor dies (no orphaned workers)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return
    if os.getppid() == 1:  # the supervisor died before the request took effect
        sys.exit(0)


def run_worker() -> None:
    """One worker of a multi-worker service (started by :mod:`reelrec.service.supervisor`, its
    listening options in ``REELREC_SERVE_LISTEN``): build the app (:func:`app_from_env`), then
    listen on its own ``SO_REUSEPORT`` socket and serve until SIGTERM. The socket is opened once
    the app is ready, so the kernel never hands a connection to a worker still loading the run.
    Any failure before serving exits with status 3 (uvicorn's start-up failure), which stops the
    service instead of restarting the worker."""
    import uvicorn

    from reelrec.service.supervisor import LISTEN_ENV, STARTUP_FAILURE

    listen = json.loads(os.environ[LISTEN_ENV])
    host, port = str(listen["host"]), int(listen["port"])
    _end_with_parent()
    config = uvicorn.Config(
        f"{__name__}:app_from_env",
        factory=True,
        host=host,
        port=port,
        log_level=str(listen["log_level"]),
        access_log=bool(listen["access_log"]),
        backlog=LISTEN_BACKLOG,
    )
    try:
        config.load()
        sock = reuseport_socket(host, port)
    except (Exception, SystemExit) as exc:  # uvicorn exits 1 on an app that does not load
        log.error("worker %d cannot start: %s", os.getpid(), exc)
        sys.exit(STARTUP_FAILURE)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C reaches the whole group: end quietly
        uvicorn.Server(config).run(sockets=[sock])


def serve(
    config: ServeConfig,
    *,
    workers: int,
    admin_token: str | None,
    host: str,
    port: int,
    log_level: str = "warning",
    access_log: bool = False,
) -> None:
    """Run the service with ``workers`` processes until interrupted. One worker runs in this
    process; several: this process checks the port, the run and the store, then *becomes*
    (``exec``) a lean supervisor of ``workers`` worker processes (same pid and process group):
    :mod:`reelrec.service.supervisor`, each worker with its own socket, on Linux; uvicorn's
    (one shared socket) elsewhere."""
    import tempfile

    import uvicorn

    from reelrec.service.supervisor import LISTEN_ENV, port_error

    problem = port_error(host, port)
    if problem is not None:
        raise ReelrecError(problem)
    if workers <= 1:
        app = build_app(config, admin_token)
        _announce(app.state.served.rec.model.name, config, app.state.store.url, host, port, admin_token, 1)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
        return
    model, store_url = _check_before_fork(config)
    _announce(model, config, store_url, host, port, admin_token, workers)
    env = dict(os.environ)
    state_dir = tempfile.mkdtemp(prefix="reelrec-serve-")
    env[CONFIG_ENV] = json.dumps(asdict(ServeConfig(**{**asdict(config), "state_dir": state_dir})))
    if admin_token:
        env[TOKEN_ENV] = admin_token
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(max(1, config.threads))
    if reuseport_available():
        listen = {
            "workers": workers,
            "host": host,
            "port": port,
            "log_level": log_level,
            "access_log": access_log,
        }
        env[LISTEN_ENV] = json.dumps(listen)
        argv = [sys.executable, "-I", str(Path(__file__).with_name("supervisor.py"))]
    else:  # pragma: no cover - not Linux
        argv = [
            sys.executable,
            "-c",
            SUPERVISOR,
            f"{__name__}:app_from_env",
            "--factory",
            "--workers",
            str(workers),
        ]
        argv += ["--host", host, "--port", str(port), "--log-level", log_level]
        argv += ["--access-log" if access_log else "--no-access-log"]
        if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
            argv += ["--timeout-worker-healthcheck", str(HEALTHCHECK_SECONDS)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def _check_before_fork(config: ServeConfig) -> tuple[str, str]:
    """Load the run once and open the store in the parent, so a bad run or store is one line
    here (not a traceback per worker) and the store's tables exist before workers race to them.
    Returns the model's name and the store's URL."""
    import gc

    from reelrec.recommender import Recommender
    from reelrec.service.store import RatingStore

    rec = Recommender.load(config.run_dir)
    name = rec.model.name
    del rec
    gc.collect()
    store = RatingStore(config.store)
    store.close()
    return name, store.url


def _announce(
    model: str, config: ServeConfig, store: str, host: str, port: int, token: str | None, workers: int
) -> None:
    print(
        f"serving {model} run {Path(config.run_dir).resolve()} on http://{host}:{port} "
        f"with {workers} worker{'s' if workers > 1 else ''} (API docs: /docs)\nratings store: {store}"
        + ("\nadmin reload: enabled" if token else ""),
        flush=True,
    )
