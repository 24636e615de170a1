"""A local fleet of real vLLM CPU engines, run as subprocesses, for tests, the demo and benchmarks.

``scripts/setup.sh`` provides what this needs: vLLM in ``.venv-vllm`` and tiny random models
in ``models/``. Typical use::

    with LocalFleet(default_specs(MODELS_DIR)) as fleet:   # starts all, waits for /health
        httpx.post(fleet.url("tiny-s") + "/v1/completions", json=...)

or from a shell, ``python -m aragog.localfleet up --config-out fleet.yaml`` (Ctrl-C stops it).

Each engine runs in its own process group with its output in ``<logs_dir>/<name>-<port>.log``;
``stop()`` signals the whole group, so vLLM's engine-core and worker children go too.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

import httpx

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "models"
LOGS_DIR = REPO / ".fleet" / "logs"
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
DEFAULT_BASE_PORT = 8101
HOST = "127.0.0.1"

EngineKind = Literal["generate", "embed"]

# name -> kind of the models scripts/build_tiny_models.py builds, smallest first.
TINY_MODELS: dict[str, EngineKind] = {
    "tiny-s": "generate",
    "tiny-m": "generate",
    "tiny-l": "generate",
    "tiny-embed": "embed",
}

# vLLM adds a pooler to the causal LM and serves /v1/embeddings instead of generation.
_EMBED_ARGS = ("--runner", "pooling", "--convert", "embed")

_ENGINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    # vLLM would pin its OpenMP threads to cores; several engines would then fight over them.
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "PYTHONUNBUFFERED": "1",
}


class FleetError(RuntimeError):
    """An engine could not start, died, or did not become healthy in time."""


@dataclass(frozen=True)
class EngineSpec:
    """One vLLM engine: ``name`` is the served model name (replicas share it, not the port)."""

    name: str
    model_dir: Path
    port: int
    max_num_seqs: int = 8
    kind: EngineKind = "generate"
    max_model_len: int = 1024
    kv_cache_bytes: str = "64M"
    # Not bfloat16 (vLLM's CPU default): its AMX attention kernel dies of SIGILL, at random,
    # on the x86 VMs we test on. The tiny models lose nothing in float32.
    dtype: str = "float32"
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def engine_id(self) -> str:
        return f"{self.name}@{HOST}:{self.port}"

    def command(self, python: Path = VLLM_PYTHON) -> list[str]:
        cmd = [
            str(python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir),
            "--served-model-name", self.name,
            "--host", HOST,
            "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--enforce-eager",
            "--dtype", self.dtype,
            "--kv-cache-memory-bytes", self.kv_cache_bytes,
            "--max-num-seqs", str(self.max_num_seqs),
        ]  # fmt: skip
        if self.kind == "embed":
            cmd += _EMBED_ARGS
        return cmd + list(self.extra_args)


@dataclass
class _Engine:
    spec: EngineSpec
    log_path: Path
    proc: subprocess.Popen[bytes]
    started_at: float
    ready_after_s: float | None = None


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (another process may still take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str,
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = 60.0,
    log: Path | None = None,
    accept: Callable[[int], bool] = lambda status: status == 200,
) -> None:
    """Block until ``GET url`` answers with a status ``accept`` takes (any process of ours
    we start and wait for: a gateway, a fake upstream). Raises RuntimeError, with the tail
    of ``log``, as soon as ``proc`` exits or when ``timeout`` seconds pass."""

    def tail() -> str:
        return "" if log is None else ":\n" + log.read_text(errors="replace")[-3000:]

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({proc.returncode}){tail()}")
        try:
            if accept(httpx.get(url, timeout=1.0).status_code):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}: not up after {timeout:.0f}s{tail()}")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def default_specs(
    models_dir: Path = MODELS_DIR,
    base_port: int | None = None,
    *,
    embed: bool = False,
    max_num_seqs: int = 8,
) -> list[EngineSpec]:
    """tiny-s, tiny-m, tiny-l (and tiny-embed if ``embed``) on ``base_port``, +1, ... or,
    when ``base_port`` is None, on free ports."""
    names = [n for n, kind in TINY_MODELS.items() if embed or kind == "generate"]
    missing = [n for n in names if not (models_dir / n / "config.json").is_file()]
    if missing:
        raise FleetError(f"no model {', '.join(missing)} in {models_dir}: run scripts/setup.sh")
    return [
        EngineSpec(
            name=name,
            model_dir=models_dir / name,
            port=free_port() if base_port is None else base_port + i,
            max_num_seqs=max_num_seqs,
            kind=TINY_MODELS[name],
        )
        for i, name in enumerate(names)
    ]


def model_cost(model_dir: Path) -> float:
    """Parameters in millions, from the build's ``aragog_model.json`` or the weights' size."""
    info = model_dir / "aragog_model.json"
    if info.is_file():
        params = int(json.loads(info.read_text())["parameters"])
    else:  # float32 weights: four bytes a parameter
        params = sum(p.stat().st_size for p in model_dir.glob("*.safetensors")) // 4
    return max(round(params / 1e6, 2), 0.01)


def gateway_config(
    specs: Sequence[EngineSpec], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``fleet:`` section of a gateway config for these engines (replicas grouped by name,
    in order of first appearance), plus any top-level ``extra`` keys (``server``, ...)."""
    models: dict[str, dict[str, Any]] = {}
    for spec in specs:
        model = models.setdefault(
            spec.name, {"name": spec.name, "cost": model_cost(spec.model_dir), "engines": []}
        )
        model["engines"].append({"url": spec.url, "served_model_name": spec.name})
    return {**(extra or {}), "fleet": {"models": list(models.values())}}


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words YAML 1.1 reads as booleans or null: as keys they must be quoted to stay strings.
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and JSON scalars (strings are JSON-quoted, which YAML
    reads as double-quoted scalars), so writing a config needs no YAML library."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = ""
        for k, v in value.items():
            key = (
                str(k)
                if _PLAIN_KEY.fullmatch(str(k)) and str(k).lower() not in _YAML_WORDS
                else json.dumps(str(k))
            )
            if isinstance(v, dict | list) and v:
                out += f"{pad}{key}:\n{to_yaml(v, indent + 2)}"
            else:
                out += f"{pad}{key}: {to_yaml(v).strip()}\n"
        return out
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = ""
        for item in value:
            body = to_yaml(item, indent + 2)
            out += f"{pad}- {body[indent + 2 :]}"
        return out
    return pad + json.dumps(value) + "\n"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the thread that started it exits."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as err:
        return f"<cannot read {path}: {err}>"
    return "\n".join(text.splitlines()[-lines:])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class LocalFleet:
    """Real vLLM engines as subprocesses. As a context manager: start, wait ready, stop."""

    specs: Sequence[EngineSpec]
    logs_dir: Path = LOGS_DIR
    python: Path = VLLM_PYTHON
    # OpenMP threads per engine: one keeps several engines on few cores from thrashing.
    threads_per_engine: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    _engines: list[_Engine] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        ports = [s.port for s in self.specs]
        if len(set(ports)) != len(ports):
            raise FleetError(f"two engines share a port: {ports}")

    @property
    def urls(self) -> dict[str, list[str]]:
        """Served model name -> engine URLs, in spec order."""
        out: dict[str, list[str]] = {}
        for spec in self.specs:
            out.setdefault(spec.name, []).append(spec.url)
        return out

    def url(self, name: str) -> str:
        """The first engine serving ``name``."""
        return self.urls[name][0]

    @property
    def startup_seconds(self) -> dict[str, float]:
        """Engine id -> seconds from spawn to the first healthy /health (ready engines only)."""
        return {
            e.spec.engine_id: e.ready_after_s for e in self._engines if e.ready_after_s is not None
        }

    @property
    def pids(self) -> dict[str, int]:
        return {e.spec.engine_id: e.proc.pid for e in self._engines}

    def log_path(self, spec: EngineSpec) -> Path:
        return self.logs_dir / f"{spec.name}-{spec.port}.log"

    def log_tail(self, spec: EngineSpec, lines: int = 40) -> str:
        return _log_tail(self.log_path(spec), lines)

    def gateway_config(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return gateway_config(self.specs, extra)

    def start(self) -> None:
        """Spawn every engine at once (they start in parallel); returns without waiting."""
        if self._engines:
            raise FleetError("fleet already started")
        if not self.python.exists():
            raise FleetError(f"no vLLM interpreter at {self.python}: run scripts/setup.sh")
        busy = [s.port for s in self.specs if _port_in_use(s.port)]
        if busy:
            raise FleetError(f"ports already in use on {HOST}: {busy} (a fleet still running?)")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        try:
            for spec in self.specs:
                self._engines.append(self._spawn(spec))
        except BaseException:
            self.stop()
            raise

    def _spawn(self, spec: EngineSpec) -> _Engine:
        env = {**os.environ, **_ENGINE_ENV, **self.env}
        env.setdefault("OMP_NUM_THREADS", str(self.threads_per_engine))
        env.pop("PYTHONPATH", None)  # the engine runs in its own venv, not ours
        log_path = self.log_path(spec)
        cmd = spec.command(self.python)
        in_main_thread = threading.current_thread() is threading.main_thread()
        with log_path.open("wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.logs_dir,
                start_new_session=True,  # own process group: stop() signals its children too
                # Death signals follow the starting *thread*; only the main thread lives as
                # long as the process, so only there is it safe to ask for one.
                preexec_fn=_die_with_parent if in_main_thread else None,
            )
        return _Engine(spec, log_path, proc, time.monotonic())

    def wait_ready(self, timeout: float = 300.0, poll_s: float = 0.5) -> None:
        """Block until every engine answers ``GET /health`` with 200.

        Raises FleetError, with the tail of the engine's log, as soon as one exits or when
        ``timeout`` seconds pass.
        """
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                for engine in self._engines:
                    if engine.ready_after_s is None:
                        self._check_engine(engine, client)
                waiting = [e for e in self._engines if e.ready_after_s is None]
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    raise FleetError(
                        f"not healthy after {timeout:.0f}s: "
                        + ", ".join(e.spec.engine_id for e in waiting)
                        + "".join(self._describe(e) for e in waiting)
                    )
                time.sleep(poll_s)

    def _check_engine(self, engine: _Engine, client: httpx.Client) -> None:
        self._raise_if_exited(engine)
        try:
            ok = client.get(engine.spec.url + "/health").status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            engine.ready_after_s = time.monotonic() - engine.started_at

    def _describe(self, engine: _Engine) -> str:
        return f"\n--- last lines of {engine.log_path} ---\n{_log_tail(engine.log_path)}\n"

    def check_alive(self) -> None:
        """Raise FleetError if an engine has exited."""
        for engine in self._engines:
            self._raise_if_exited(engine)

    def _raise_if_exited(self, engine: _Engine) -> None:
        if (rc := engine.proc.poll()) is not None:
            raise FleetError(
                f"engine {engine.spec.engine_id} exited with code {rc}" + self._describe(engine)
            )

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every engine's process group, wait up to ``grace_s``, then SIGKILL."""
        engines, self._engines = self._engines, []
        groups = [e.proc.pid for e in engines]  # start_new_session: pgid == pid
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
            for engine in engines:
                engine.proc.poll()  # reap, so the leader does not linger as a zombie
            time.sleep(0.1)
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        for engine in engines:
            engine.proc.wait()

    def __enter__(self) -> LocalFleet:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _up(args: argparse.Namespace) -> int:
    specs = default_specs(
        args.models_dir, args.base_port, embed=args.embed, max_num_seqs=args.max_num_seqs
    )
    fleet = LocalFleet(specs, logs_dir=args.logs_dir)
    with _stop_on_sigterm():
        try:
            print(f"starting {len(specs)} engines, logs in {fleet.logs_dir}", flush=True)
            fleet.start()
            fleet.wait_ready(args.timeout)
            for engine_id, seconds in fleet.startup_seconds.items():
                print(f"  {engine_id} ready in {seconds:.1f}s")
            if args.config_out:
                extra = {"server": {"host": HOST, "port": args.gateway_port}}
                args.config_out.write_text(
                    "# written by `python -m aragog.localfleet up`\n"
                    + to_yaml(fleet.gateway_config(extra))
                )
                print(f"gateway config: {args.config_out}")
            print("fleet up; Ctrl-C or SIGTERM stops it", flush=True)
            while True:
                fleet.check_alive()
                time.sleep(1.0)
        except (KeyboardInterrupt, _Stop):
            print("stopping the fleet", flush=True)
            return 0
        except FleetError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        finally:
            fleet.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aragog.localfleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the tiny-model fleet and keep it up until Ctrl-C")
    up.add_argument("--config-out", type=Path, help="write a gateway config YAML here")
    up.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    up.add_argument("--logs-dir", type=Path, default=LOGS_DIR)
    up.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    up.add_argument("--gateway-port", type=int, default=8000, help="server.port in the config")
    up.add_argument("--max-num-seqs", type=int, default=8)
    up.add_argument("--embed", action="store_true", help="also serve tiny-embed (embeddings)")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for health")
    up.set_defaults(func=_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
