"""The focal model as each peer serves it: runs inside a peer's own venv, without lossd.

``python peer_models.py kserve DIR``: KServe's ``ModelServer``, one worker. MLServer loads
``peer_models:MLServerFocal`` itself (``mlserver start DIR``; see ``bench.peers``). Both run
lossd's exported focal graph (``DIR/focal.onnx``) with the constant feeds lossd gives it
(``DIR/feeds.json``), in a session configured as lossd's are, so the peers differ from
lossd only in what serves the request.

Imports only numpy, onnxruntime and the peer's own package: lossd is not installed there.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

HOST = "127.0.0.1"


class FocalGraph:
    """lossd's focal graph and its constant feeds (params, unit weights' dtype, the mean flag)."""

    def __init__(self, directory: Path) -> None:
        options = ort.SessionOptions()
        # As kernels.runtime.session_options: a peer must not lose (or gain) by its session.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(os.environ.get("LOSSD_INTRA_OP_THREADS", "1"))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = (directory / "focal.onnx").read_bytes()
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        feeds = json.loads((directory / "feeds.json").read_text())
        self.constants = {
            name: np.asarray(value["value"], dtype=value["dtype"]).reshape(value["shape"])
            for name, value in feeds["constants"].items()
        }
        self.weights = feeds["weights"]

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        rows = predictions.shape[0]
        feed = {
            "predictions": predictions.astype(np.float32, copy=False).reshape(rows, -1),
            "targets": targets.astype(np.float32, copy=False).reshape(rows, -1),
            self.weights: np.ones(rows, np.float32),
            **self.constants,
        }
        (loss,) = self.session.run(["loss"], feed)
        return float(loss)


def serve_kserve(directory: Path, port: int) -> None:
    import kserve
    import uvicorn
    from kserve import InferOutput, InferRequest, InferResponse

    class KServeFocal(kserve.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__("focal")
            self.graph: FocalGraph | None = None

        def load(self) -> bool:
            self.graph = FocalGraph(directory)
            self.ready = True
            return True

        async def predict(
            self, payload: InferRequest, headers: dict[str, str] | None = None, response_headers: Any = None
        ) -> InferResponse:
            assert self.graph is not None
            arrays = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
            loss = self.graph.loss(arrays["predictions"], arrays["targets"])
            output = InferOutput(name="loss", shape=[], datatype="FP32", data=[loss])
            # KServe's response model requires an id, which the request may leave out.
            response_id = payload.id or str(uuid.uuid4())
            return InferResponse(model_name=self.name, infer_outputs=[output], response_id=response_id)

    # KServe binds every interface and leaves uvicorn's access log on; lossd serves on one
    # address with no access log, and so does the peer here.
    config = uvicorn.Config.__init__

    def local_config(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        config(self, *args, **{**kwargs, "host": HOST, "access_log": False})

    uvicorn.Config.__init__ = local_config  # type: ignore[method-assign]
    model = KServeFocal()
    model.load()
    server = kserve.ModelServer(
        http_port=port, workers=1, enable_grpc=False, enable_latency_logging=False, event_loop="uvloop"
    )
    server.start([model])


try:
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

    class MLServerFocal(MLModel):  # type: ignore[misc]
        async def load(self) -> bool:
            uri = self.settings.parameters.uri
            self.graph = FocalGraph(Path(uri))
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            arrays = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
            loss = self.graph.loss(arrays["predictions"], arrays["targets"])
            output = ResponseOutput(name="loss", shape=[], datatype="FP32", data=[loss])
            return InferenceResponse(model_name=self.name, id=payload.id, outputs=[output])

except ImportError:  # in the KServe venv (and in lossd's, where mypy reads this file)
    pass


if __name__ == "__main__":
    kind, where = sys.argv[1], Path(sys.argv[2])
    if kind != "kserve":
        raise SystemExit(f"usage: {sys.argv[0]} kserve DIR (MLServer loads this module itself)")
    serve_kserve(where, int(os.environ["LOSSD_PORT"]))
