"""The Dockerfiles, read rather than built (no engine needed): `docker build .` must work
with Docker's legacy builder, which builds every stage of a file whatever the target, so
the default Dockerfile holds only stages its last one needs and nothing from a registry
beyond BASE; the GPU image, which needs the CUDA base, is Dockerfile.gpu. Both runtime
images keep the same environment (non-root, read-only root filesystem)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTINUED = re.compile(r"\\\n")
FROM = re.compile(r"^FROM\s+(?:--\S+\s+)*(?P<base>\S+)(?:\s+AS\s+(?P<name>\S+))?\s*$", re.I)
COPY_FROM = re.compile(r"--from=(\S+)")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[str]


def stages(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each with its instructions (continuation lines joined,
    comments dropped)."""
    found: list[Stage] = []
    lines = CONTINUED.sub(" ", path.read_text()).splitlines()
    for line in (line.strip() for line in lines):
        if not line or line.startswith("#"):
            continue
        if match := FROM.match(line):
            found.append(Stage(match["base"], match["name"], []))
        elif found:
            found[-1].instructions.append(line)
    return found


def needed(all_stages: list[Stage]) -> set[int]:
    """The indices of the stages the last one needs: through FROM and COPY --from."""
    by_name = {stage.name: index for index, stage in enumerate(all_stages) if stage.name}
    wanted, todo = set(), [len(all_stages) - 1]
    while todo:
        index = todo.pop()
        if index in wanted:
            continue
        wanted.add(index)
        stage = all_stages[index]
        refs = [stage.base] + [ref for line in stage.instructions for ref in COPY_FROM.findall(line)]
        todo += [by_name[ref] for ref in refs if ref in by_name]
    return wanted


def runtime_env(path: Path) -> str:
    (env,) = (line for line in stages(path)[-1].instructions if line.startswith("ENV "))
    return " ".join(env.split())


def test_every_stage_of_the_default_dockerfile_is_needed_by_the_image() -> None:
    """The legacy builder builds all of them: one the image does not need is wasted at
    best, and an unpullable base (the CUDA image offline) at worst."""
    all_stages = stages(REPO / "Dockerfile")
    unused = [stage.name or stage.base for index, stage in enumerate(all_stages) if index not in needed(all_stages)]
    assert not unused, f"stages the CPU image does not need: {unused}"
    bases = {stage.base for stage in all_stages} - {stage.name for stage in all_stages}
    assert bases == {"${BASE}"}, bases


def test_the_default_image_runs_as_the_non_root_user() -> None:
    last = stages(REPO / "Dockerfile")[-1]
    assert "USER 10001" in last.instructions
    assert last.instructions[-1] == 'CMD ["lossd", "serve"]'


def test_the_gpu_image_has_its_own_dockerfile() -> None:
    all_stages = stages(REPO / "Dockerfile.gpu")
    assert {stage.base for stage in all_stages} - {stage.name for stage in all_stages} == {"${GPU_BASE}"}
    assert len(needed(all_stages)) == len(all_stages)
    assert "USER 10001" in all_stages[-1].instructions
    assert "GPU_BASE" not in (REPO / "Dockerfile").read_text()


def test_both_images_have_the_same_runtime_environment() -> None:
    """Among it what a read-only root filesystem needs: no bytecode written, HOME and
    matplotlib's cache under /tmp."""
    env = runtime_env(REPO / "Dockerfile")
    assert env == runtime_env(REPO / "Dockerfile.gpu")
    for setting in (
        "PYTHONDONTWRITEBYTECODE=1",
        "HOME=/tmp",
        "MPLCONFIGDIR=/tmp/matplotlib",
        "LOSSD_DATA_DIR=/var/lib/lossd",
    ):
        assert setting in env.split(), setting
