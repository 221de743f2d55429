"""The trusted bootstrap that runs first inside every sandbox. Its source is passed with `-c`.

It is started as `python -I -S -c <this source> CPU MEMORY PROCESSES FILE_BYTES COUNT [PATH...]`
(in bubblewrap as pid 1 of the sandbox's pid namespace),
sets the resource limits (hard = soft, so the snippet cannot raise them), waits in the warm pool
until the code arrives on stdin, runs it like a notebook cell (the value of a final expression is
printed) and leaves with `os._exit`, which skips interpreter teardown (several ms).

It uses only the standard library and must run on any Python >= 3.8 the sandbox might use.
"""

import contextlib
import os
import resource
import signal
import sys

MEMORY_EXIT = 120  # an uncaught MemoryError: the runner reports the memory limit
CPU_EXIT = 121  # SIGXCPU: the CPU-time limit
FILENAME = "<code>"


def _limit(kind: int, soft: int, hard: int) -> None:
    _, current_hard = resource.getrlimit(kind)
    if current_hard != resource.RLIM_INFINITY:  # a hard limit can only be lowered
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(kind, (soft, hard))


def _own_processes() -> int:
    """Processes of this real uid: without a user namespace RLIMIT_NPROC counts all of them."""
    uid, count = str(os.getuid()), 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("Uid:"):
                        count += line.split()[1] == uid
                        break
        except (OSError, ValueError):
            continue
    return count


def _cpu_exceeded(signum: int, frame: object) -> None:
    os._exit(CPU_EXIT)


def _set_limits(argv: "list[str]") -> None:
    cpu, memory, processes, file_bytes, count_existing = (int(a) for a in argv[:5])
    # SIGXCPU at the soft limit names the cause; SIGKILL a second later if the code replaces the
    # handler or sits in C code. The handler is needed: as pid 1 of its namespace the
    # interpreter does not die of a signal it has no handler for.
    signal.signal(signal.SIGXCPU, _cpu_exceeded)
    _limit(resource.RLIMIT_CPU, cpu, cpu + 1)
    _limit(resource.RLIMIT_AS, memory, memory)
    _limit(resource.RLIMIT_FSIZE, file_bytes, file_bytes)
    _limit(resource.RLIMIT_CORE, 0, 0)
    if count_existing:
        processes += _own_processes()
    _limit(resource.RLIMIT_NPROC, processes, processes)


def _run(source: bytes, namespace: "dict[str, object]") -> int:
    import ast
    import linecache

    text = source.decode("utf-8", "replace")
    # Registered so that tracebacks show the offending lines of the snippet.
    linecache.cache[FILENAME] = (len(text), None, text.splitlines(keepends=True), FILENAME)
    tree = ast.parse(text, FILENAME, "exec")
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
    exec(compile(tree, FILENAME, "exec"), namespace)
    if isinstance(last, ast.Expr):
        value = eval(compile(ast.Expression(last.value), FILENAME, "eval"), namespace)
        if value is not None:
            print(repr(value))
    return 0


def _report(exc: BaseException) -> None:
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
        tb = tb.tb_next  # hide the bootstrap's own frames
    traceback.print_exception(type(exc), exc, tb)


def _report_safely(exc: BaseException) -> None:
    # Out of memory again, or stderr closed: the exit status still tells what happened.
    with contextlib.suppress(BaseException):
        _report(exc)


def main() -> None:
    _set_limits(sys.argv[1:6])
    sys.path.extend(sys.argv[6:])
    for stream in (sys.stdout, sys.stderr):
        # Line buffering: output printed before a kill (timeout, CPU) is not lost in a buffer.
        stream.reconfigure(encoding="utf-8", errors="backslashreplace", line_buffering=True)  # type: ignore[union-attr]
    import ast  # noqa: F401  (imported while the worker waits in the pool, not on the clock)
    import linecache  # noqa: F401
    import traceback  # noqa: F401

    source = sys.stdin.buffer.read()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # input() now sees end of file instead of the code
    os.close(devnull)
    sys.argv = [""]
    namespace: dict[str, object] = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        status = _run(source, namespace)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            status = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            status = 1
    except MemoryError as exc:
        status = MEMORY_EXIT
        _report_safely(exc)
    except BaseException as exc:
        status = 1
        _report_safely(exc)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the runner stopped reading (output limit): nothing left to tell it
        pass
    os._exit(status & 0xFF)


if __name__ == "__main__":
    main()
