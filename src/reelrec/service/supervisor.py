"""The parent of ``reelrec serve --workers N`` (N > 1) on Linux: N worker processes, each with its
own listening socket on the same port (``SO_REUSEPORT``), kept running.

Why not uvicorn's own multi-process mode: there every worker accepts from one shared socket and
the first to wake takes every pending connection, so a client's keep-alive connections opened
together land on one worker (9 of 10 were seen on one of two workers, which then queued the
requests on one core while the other idled). With a socket per worker the kernel spreads new
connections over the workers by a hash of their addresses.

This file runs as a script (``python -I supervisor.py``, the process ``reelrec serve``
becomes; its options in the environment), so it imports only the standard library: the
supervisor holds no copy of torch or the run. It

* checks the port is free (one socket bound without ``SO_REUSEPORT`` for a moment), so a port in
  use, or another ``reelrec serve`` on it, is one line and exit status 1, never two services
  silently sharing a port;
* starts the workers (:func:`reelrec.service.workers.run_worker`: load the app, bind, serve) in
  its own process group, each asking the kernel to end it when the supervisor dies;
* restarts a worker that dies, unless it failed while starting (uvicorn's exit status 3 at the
  service's start, or exits within :data:`EARLY_EXIT_S` of its start three times in a row: a
  replacement that cannot load the run, say while it is being rewritten, gets three tries): then
  it stops the service and exits with status 1, as uvicorn does;
* on SIGTERM, SIGINT or SIGHUP stops the workers (SIGTERM, then SIGKILL after
  :data:`STOP_GRACE_S`), removes the service's private state folder and exits.

The private state folder (``reelrec-serve-*`` in the temporary folder, made by
:func:`make_state_dir` before ``reelrec serve`` becomes the supervisor) holds the pinned run
(``run.json``: generation, run path, manifest sha256) and ``owner.lock``, which the supervisor
holds locked (``flock``) for as long as it lives. A supervisor killed with SIGKILL cannot remove
its folder; the next ``reelrec serve`` does (:func:`clean_stale_state_dirs`): only folders of
this user with reelrec's owner file whose lock nobody holds, and in them only reelrec's files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

#: uvicorn's exit status for a worker that failed before serving (``uvicorn.config.STARTUP_FAILURE``)
STARTUP_FAILURE = 3
#: a worker that exits this soon after its start counts as failing to start
EARLY_EXIT_S = 10.0
#: how long stopping workers get to finish their requests before SIGKILL
STOP_GRACE_S = 15.0
#: the worker's command: the app and its socket are made in :func:`reelrec.service.workers.run_worker`
WORKER_CODE = "from reelrec.service.workers import run_worker; run_worker()"
#: environment variable carrying the listening options (JSON), to the supervisor and its workers
LISTEN_ENV = "REELREC_SERVE_LISTEN"


#: the name of a service's private state folder starts so (in the temporary folder)
STATE_PREFIX = "reelrec-serve-"
#: the owner file of a state folder, held locked by its supervisor, and the text it starts with
OWNER_FILE = "owner.lock"
OWNER_MARK = b"reelrec serve state folder"
#: the files reelrec writes in a state folder (the only ones a clean-up removes)
_STATE_FILES = re.compile(r"(owner\.lock|run\.json|run\.lock|run\.json\.\d+)")


def make_state_dir() -> str:
    """A new private state folder, its owner file locked by this process for as long as it (or
    the program it becomes with ``exec``: the descriptor is inheritable) lives; workers do not inherit
    it (``close_fds``)."""
    import fcntl

    path = tempfile.mkdtemp(prefix=STATE_PREFIX)
    fd = os.open(os.path.join(path, OWNER_FILE), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, OWNER_MARK + f" {os.getpid()}\n".encode())
    os.set_inheritable(fd, True)
    return path


def clean_stale_state_dirs(root: str | None = None) -> list[str]:
    """Remove the state folders of services whose supervisor is gone (killed with SIGKILL):
    folders in ``root`` (default: the temporary folder) named :data:`STATE_PREFIX`, owned by this
    user, holding reelrec's owner file that no process holds locked. Only reelrec's own files are
    removed, and the folder once empty. Returns the folders removed."""
    import fcntl

    root = root or tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(STATE_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        try:
            if (
                not entry.is_dir(follow_symlinks=False)
                or entry.stat(follow_symlinks=False).st_uid != os.getuid()
            ):
                continue
            fd = os.open(os.path.join(entry.path, OWNER_FILE), os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue  # not a folder reelrec made (or one being made): left alone
        try:
            if os.read(fd, len(OWNER_MARK)) != OWNER_MARK:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its supervisor is alive
            for name in os.listdir(entry.path):
                if _STATE_FILES.fullmatch(name):
                    os.unlink(os.path.join(entry.path, name))
            os.rmdir(entry.path)
            removed.append(entry.path)
        except OSError:
            continue  # something not reelrec's is inside: the folder stays
        finally:
            os.close(fd)
    for path in removed:
        _say(f"removed the state folder {path} of a service that was killed")
    return removed


def _say(message: str) -> None:
    print(f"reelrec serve: {message}", file=sys.stderr, flush=True)


def port_error(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, a bad address), or ``None`` when free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


class Supervisor:
    """Keeps ``workers`` worker processes running until told to stop."""

    def __init__(self, workers: int, state_dir: str | None) -> None:
        self.n = workers
        self.state_dir = state_dir
        self.procs: list[subprocess.Popen | None] = [None] * workers
        self.started = [0.0] * workers
        self.early_exits = [0] * workers
        self.replacing = [False] * workers  # the slot's worker died once the service was up
        self.stopping = False
        self.status = 0

    def _spawn(self, slot: int) -> None:
        cmd = [sys.executable, "-c", WORKER_CODE]
        self.procs[slot] = subprocess.Popen(cmd)  # same process group: kill -9 of the group ends all
        self.started[slot] = time.monotonic()

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            for slot in range(self.n):
                self._spawn(slot)
            while not self.stopping:
                self._check()
                time.sleep(0.2)
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.status

    def _check(self) -> None:
        for slot, proc in enumerate(self.procs):
            if proc is None or proc.poll() is None:
                continue
            code = proc.returncode
            early = time.monotonic() - self.started[slot] < EARLY_EXIT_S
            self.early_exits[slot] = self.early_exits[slot] + 1 if early else 0
            first_start = code == STARTUP_FAILURE and not self.replacing[slot]
            if first_start or self.early_exits[slot] >= 3:
                _say(f"a worker failed to start (exit status {code}); stopping")
                self.status = 1
                self.stopping = True
                return
            _say(f"worker {proc.pid} exited (status {code}); starting another")
            self.replacing[slot] = True
            self._spawn(slot)

    def _shutdown(self) -> None:
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def main() -> int:
    """Read the service's listening options (``REELREC_SERVE_LISTEN``, JSON: workers, host, port,
    log level, access log) and its private state folder (in ``REELREC_SERVE_CONFIG``), check the
    port, then supervise the workers; the exit status."""
    listen = json.loads(os.environ[LISTEN_ENV])
    state_dir = json.loads(os.environ.get("REELREC_SERVE_CONFIG", "{}")).get("state_dir")
    problem = port_error(listen["host"], int(listen["port"]))
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        if state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        return 1
    return Supervisor(int(listen["workers"]), state_dir).run()


if __name__ == "__main__":
    sys.exit(main())
