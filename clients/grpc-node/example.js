// lossd over the Open Inference Protocol's gRPC binding from Node.js: stubs loaded at run
// time from the committed proto (service/grpc/grpc_predict_v2.proto: KServe's
// grpc_predict_v2.proto plus Triton's ModelConfig and ModelStatistics) by
// @grpc/proto-loader, called through @grpc/grpc-js.
//
//   node example.js [HOST:PORT]     (default 127.0.0.1:8001; LOSSD_API_KEY: sent as a Bearer key)
//
// Prints one JSON line: the input, the server's readiness, focal's metadata, the infer
// result (loss and per-sample losses, from raw little-endian FP32 bytes), and the status
// code and message of an infer for a model that does not exist.

import { fileURLToPath } from "node:url";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO = path.join(here, "..", "..", "service", "grpc", "grpc_predict_v2.proto");
const address = process.argv[2] ?? "127.0.0.1:8001";

const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true });
const inference = grpc.loadPackageDefinition(definition).inference;
const client = new inference.GRPCInferenceService(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
if (process.env.LOSSD_API_KEY) metadata.set("authorization", `Bearer ${process.env.LOSSD_API_KEY}`);

function call(method, request) {
  return new Promise((resolve, reject) =>
    client[method](request, metadata, { deadline: Date.now() + 30000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

function raw(values) {
  return Buffer.from(new Float32Array(values).buffer);
}

function floats(bytes) {
  const copy = Uint8Array.from(bytes); // aligned for the Float32Array view
  return Array.from(new Float32Array(copy.buffer)).map((x) => Number(x.toPrecision(8)));
}

const input = {
  predictions: [[0.2, -1.3], [2.0, 0.1]],
  targets: [[0, 1], [1, 0]],
  weights: [1.0, 0.5],
  params: { alpha: 0.25, gamma: 2.0, from_logits: true },
};

const ready = (await call("ServerReady", {})).ready;
const model = await call("ModelMetadata", { name: "focal" });
const tensors = [
  { name: "predictions", datatype: "FP32", shape: [2, 2] },
  { name: "targets", datatype: "FP32", shape: [2, 2] },
  { name: "weights", datatype: "FP32", shape: [2] },
];
const response = await call("ModelInfer", {
  model_name: "focal",
  inputs: tensors,
  outputs: [{ name: "loss" }, { name: "per_sample" }],
  parameters: {
    alpha: { double_param: input.params.alpha },
    gamma: { double_param: input.params.gamma },
    from_logits: { bool_param: input.params.from_logits },
  },
  raw_input_contents: [raw(input.predictions.flat()), raw(input.targets.flat()), raw(input.weights)],
});
const outputs = Object.fromEntries(response.outputs.map((o, i) => [o.name, floats(response.raw_output_contents[i])]));

let unknown;
try {
  await call("ModelInfer", { model_name: "focall", inputs: tensors, raw_input_contents: [] });
} catch (error) {
  unknown = { code: grpc.status[error.code], details: error.details };
}
client.close();

console.log(
  JSON.stringify({
    input,
    ready,
    inputs: model.inputs.map((i) => i.name),
    grpc: { loss: outputs.loss[0], per_sample: outputs.per_sample },
    unknown,
  }),
);
