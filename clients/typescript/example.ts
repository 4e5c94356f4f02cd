// A sigmoid focal loss from lossd three ways, with types generated from openapi/openapi.json:
// POST /loss/focal, the focal registry card, and the Open Inference Protocol (V2) with JSON tensors.
// Usage: node build/example.js [BASE_URL]   (or LOSSD_URL=...; default http://127.0.0.1:8000)
import createClient from "openapi-fetch";

import type { components, paths } from "./src/schema.js";

type FocalRequest = components["schemas"]["FocalRequest"];
type TensorInput = components["schemas"]["TensorInput"];

const baseUrl = process.argv[2] ?? process.env.LOSSD_URL ?? "http://127.0.0.1:8000";
const lossd = createClient<paths>({ baseUrl });

const input = {
  predictions: [
    [0.2, -1.3],
    [2.0, 0.1],
  ],
  targets: [
    [0, 1],
    [1, 0],
  ],
  weights: [1.0, 0.5],
  params: { alpha: 0.25, gamma: 2.0, from_logits: true },
} satisfies FocalRequest;

/** A V2 JSON tensor: shape from the nested arrays, data flattened row-major. */
function tensor(name: string, values: number[] | number[][]): TensorInput {
  const shape = Array.isArray(values[0]) ? [values.length, values[0].length] : [values.length];
  return { name, shape, datatype: "FP32", data: values.flat() };
}

/** Fails loudly with the server's own error body (problem details, or V2's {"error": ...}). */
function unwrap<T>(what: string, result: { data?: T; error?: unknown; response: Response }): T {
  if (result.data === undefined) {
    throw new Error(`${what}: HTTP ${result.response.status} ${JSON.stringify(result.error)}`);
  }
  return result.data;
}

const rest = unwrap(
  "POST /loss/focal",
  await lossd.POST("/loss/focal", { body: { ...input, outputs: ["loss", "per_sample"] } }),
);

const card = unwrap(
  "GET /losses/focal",
  await lossd.GET("/losses/{name}", { params: { path: { name: "focal" } } }),
);

const inference = unwrap(
  "POST /v2/models/focal/infer",
  await lossd.POST("/v2/models/{name}/infer", {
    params: { path: { name: "focal" } },
    body: {
      inputs: [
        tensor("predictions", input.predictions),
        tensor("targets", input.targets),
        tensor("weights", input.weights),
      ],
      parameters: { ...input.params, reduction: "mean" },
      outputs: [{ name: "loss" }, { name: "per_sample" }],
    },
  }),
);
const output = (name: string): number[] => {
  const found = inference.outputs.find((o) => o.name === name);
  if (!found?.data) throw new Error(`V2 response has no JSON output ${name}`);
  return found.data;
};

console.log(
  JSON.stringify({
    input,
    rest: { loss: rest.loss, per_sample: rest.per_sample },
    card: { name: card.name, title: card.title, task: card.task, aliases: card.aliases, gradients: card.gradients },
    v2: { loss: output("loss")[0], per_sample: output("per_sample") },
  }),
);
