"""The README's Docker commands, as the suite runs them: each is read from the README and
changed only where these machines differ (the engine has no bridge network, so `-p` becomes
`--network host` and `LOSSD_PORT`; the image is the suite's tag; names and volumes are
unique), every change named and required to apply. A README command that drifts fails the
test that runs it, rather than the test running something else."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
BASH = re.compile(r"```bash\n(.*?)```", re.S)

Tokens = tuple[str, ...]


def split(line: str) -> list[str]:
    """A line's words; none for a line of a quoted string that spans lines (a curl body)."""
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return []


def readme_lines() -> list[list[str]]:
    """Every command line of the README's bash blocks, continuations joined, comments dropped."""
    blocks = BASH.findall(README.read_text())
    lines = (line for block in blocks for line in block.replace("\\\n", " ").splitlines())
    return [tokens for tokens in map(split, lines) if tokens]


def readme_command(chosen: Callable[[list[str]], bool], what: str) -> list[str]:
    """The one README command line ``chosen`` picks."""
    found = [tokens for tokens in readme_lines() if chosen(tokens)]
    assert len(found) == 1, f"the README should have one {what}, has {found}"
    return found[0]


def substitute(tokens: list[str], changes: dict[Tokens, Tokens]) -> list[str]:
    """``tokens`` with each sequence of ``changes`` replaced (each must occur exactly once)."""
    result = list(tokens)
    for old, new in changes.items():
        starts = [i for i in range(len(result) - len(old) + 1) if tuple(result[i : i + len(old)]) == old]
        assert len(starts) == 1, f"{' '.join(old)!r} should occur once in the README's {' '.join(tokens)!r}"
        result[starts[0] : starts[0] + len(old)] = new
    return result


def build(tag: str, base_image: str | None, context: str) -> list[str]:
    """The README's `docker build -t lossd .`: on the host's network (the engine has no
    bridge), with the local base image where there is one. No `--target`: the CPU image is
    all the Dockerfile holds (the GPU one is in Dockerfile.gpu), so the legacy builder,
    which builds every stage, needs no registry."""
    readme = readme_command(lambda t: t[:2] == ["docker", "build"] and "-f" not in t, "docker build of the CPU image")
    base = ("--build-arg", f"BASE={base_image}") if base_image is not None else ()
    return substitute(readme, {("-t", "lossd", "."): ("--network", "host", *base, "-t", tag, context)})


def read_only_run(name: str, port: int, grpc_port: int, volume: str, image: str) -> list[str]:
    """The README's read-only `docker run` (a tmpfs on /tmp, a volume on the data directory).
    On the host's network its gRPC port is given too: the README maps HTTP only, leaving
    gRPC's 8001 inside the container, where here it would take (or find taken) the host's."""
    readme = readme_command(lambda t: t[:2] == ["docker", "run"] and "--read-only" in t and "-p" in t, "read-only run")
    changes: dict[Tokens, Tokens] = {
        ("-d",): ("-d", "--name", name),
        ("-p", "8000:8000"): ("--network", "host", "-e", f"LOSSD_PORT={port}", "-e", f"LOSSD_GRPC_PORT={grpc_port}"),
        ("-v", "lossd-data:/var/lib/lossd"): ("-v", f"{volume}:/var/lib/lossd"),
    }
    assert readme[-1] == "lossd", f"the README's read-only run runs the image `lossd`: {readme}"
    return [*substitute(readme[:-1], changes), image]


def replica_run(name: str, port: int, image: str, tmp: str) -> list[str]:
    """The README's `docker run` of a replica (``tmp``: the host directory that is its /tmp,
    where the README has a tmpfs)."""
    readme = readme_command(lambda t: t[:2] == ["docker", "run"] and "$port" in " ".join(t), "replica run")
    command = [token.replace("lossd-$port", name).replace("$port", str(port)) for token in readme]
    changes: dict[Tokens, Tokens] = {("--tmpfs", "/tmp"): ("-v", f"{tmp}:/tmp")}
    assert command[-1] == "lossd", f"the README's replica runs the image `lossd`: {readme}"
    return [*substitute(command[:-1], changes), image]
