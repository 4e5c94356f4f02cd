"""Generates the protobuf and gRPC stubs of ``grpc_predict_v2.proto`` beside it
(``python -m service.grpc.generate``; grpcio-tools, a development dependency). The stubs are
committed; tests/service/test_grpc_stubs.py checks that they are what this writes."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = Path(__file__).with_name("grpc_predict_v2.proto")
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")
DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("  # lossd: a pool of its own, see own_pool


def generate(out: Path) -> list[Path]:
    """Write the stubs under ``out`` (laid out as from the repository root); their paths."""
    from grpc_tools import protoc

    source = PROTO.relative_to(ROOT)
    args = ["protoc", f"-I{ROOT}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", str(source)]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}: {' '.join(args)}")
    paths = [out / source.parent / name for name in GENERATED]
    own_pool(paths[0])
    return paths


def own_pool(module: Path) -> None:
    """Register the descriptors in a pool of their own, not protobuf's default one: Triton's
    grpc_service.proto (tritonclient.grpc's stubs) defines the same ``inference.*`` names,
    and the default pool refuses a second file that defines them ("duplicate symbol"), so
    the two could not be imported into one process (a test, a client beside lossd). Messages
    are identified on the wire by field numbers only: the pool does not change what is sent."""
    text = module.read_text()
    if text.count(DEFAULT_POOL) != 1:
        raise RuntimeError(f"{module}: protoc's output no longer registers its file as expected")
    module.write_text(text.replace(DEFAULT_POOL, OWN_POOL))


if __name__ == "__main__":
    for path in generate(ROOT):
        print(path.relative_to(ROOT), file=sys.stderr)
