"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService`` of
grpc_predict_v2.proto, plus Triton's ModelConfig and ModelStatistics), a thin edge over the
same data plane as HTTP: ``tensors`` turns protobuf messages into service.v2's protocol
model and back, ``status`` maps service.errors kinds to status codes (once), ``inference``
and ``health`` are the servicers, ``server`` runs them on the app's event loop."""
