"""Bad input gets a clear 4xx naming the field, never a 500."""

import gzip
import logging
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from service import json_arrays

FOCAL = {"predictions": [[0.2, 0.7], [0.9, 0.1]], "targets": [[0, 1], [1, 0]]}
DICE = {"predictions": [[[0.5, 0.5], [0.2, 0.8]]], "targets": [[[1.0, 0.0], [0.0, 1.0]]]}
SPARSE = {"predictions": [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], "targets": [2, 0]}
IMAGES = {"predictions": [[[[0.1, 0.2]]]], "targets": [[[[0.3, 0.4]]]]}
POISSON = {"predictions": [[0.5, -1.0], [2.0, 0.1]], "targets": [[0, 3], [1, 2.5]]}
GAUSSIAN = {"predictions": [[0.5, -1.0], [2.0, 0.1]], "targets": [[0, 1], [1, 0]], "variance": [[1.0, 0.5], [0, 2]]}
SIGNED = {"predictions": [[0.2, -1.5], [0.9, 0.1]], "targets": [[1, -1], [-1, 1]]}
SCORES = {"predictions": [[0.2, -1.5, 3.0], [0.9, 0.1, 0.0]], "targets": [2, 0]}
PAIRS = {"x1": [[0.0, 1.0], [1.0, 1.0]], "x2": [[1.0, 0.0], [0.5, 1.0]], "targets": [1, 0]}
SIGNED_PAIRS = {**PAIRS, "targets": [1, -1]}
TRIPLET = {"anchor": [[0.0, 1.0]], "positive": [[1.0, 0.0]], "negative": [[0.5, 0.5]]}
GAN_SCORES = {"real_scores": [1.0, 2.0, 0.5], "fake_scores": [-1.0, 0.0]}
LOGITS = {"real_logits": [1.0, 2.0, 0.5], "fake_logits": [-1.0, 0.0]}
BINS = {"predictions": [[0.2, 0.3, 0.5]], "targets": [[0.0, 1.0, 0.0]]}
LOG_THIRD = [[-1.0986] * 3] * 4
CTC = {
    "predictions": [LOG_THIRD, LOG_THIRD],
    "targets": [[1, 2], [1, 1]],
    "input_lengths": [4, 3],
    "target_lengths": [2, 2],
}
MASKS = {"predictions": [[[0.2, 0.7, 0.4]], [[0.9, 0.1, 0.5]]], "targets": [[[0, 1, 1]], [[1, 0, 0]]]}  # (2, 1, 3)
MASKS2 = {  # (2, 2, 3): two channels
    "predictions": [[[0.2, 0.7, 0.4], [0.8, 0.3, 0.6]], [[0.9, 0.1, 0.5], [0.1, 0.9, 0.5]]],
    "targets": [[[0, 1, 1], [1, 0, 0]], [[1, 0, 0], [0, 1, 1]]],
}
IMAGE = [[[[0.1 * ((i + j) % 7) for j in range(11)] for i in range(11)]]]  # (1, 1, 11, 11)
SSIM = {"predictions": IMAGE, "targets": IMAGE}
NESTED_100: Any = 0.5
for _ in range(100):
    NESTED_100 = [NESTED_100]

# (id, loss, body (dict, or raw bytes), status, field, words the detail must contain)
CASES: list[tuple[str, str, Any, int, str | None, str]] = [
    ("malformed-json", "focal", b'{"predictions": [[0.2', 400, None, "not valid JSON"),
    # Not JSON, but what numpy and Python write for non-finite floats: named like an overflow.
    ("nan-literal", "focal", b'{"predictions": [[NaN]], "targets": [[0]]}', 422, "predictions", "nan at index [0, 0]"),
    (
        "infinity-literal",
        "focal",
        b'{"predictions": [[0.5, Infinity]], "targets": [[0, 1]]}',
        422,
        "predictions",
        "inf at index [0, 1]",
    ),
    (
        "minus-infinity",
        "focal",
        b'{"predictions": [[-Infinity]], "targets": [[0]]}',
        422,
        "predictions",
        "-inf at index [0, 0]",
    ),
    (
        "nan-flat",
        "mse",
        b'{"predictions": [0.5, 1, NaN], "targets": [0, 1, 2]}',
        422,
        "predictions",
        "nan at index [2]",
    ),
    ("nan-in-targets", "mse", b'{"predictions": [[1], [2]], "targets": [[0], [NaN]]}', 422, "targets", "index [1, 0]"),
    (
        "nan-in-weights",
        "mse",
        b'{"predictions": [1, 2], "targets": [0, 1], "weights": [NaN, 1]}',
        422,
        "weights",
        "index [0]",
    ),
    (
        "nan-in-params",
        "focal",
        b'{"predictions": [[0.5]], "targets": [[0]], "params": {"gamma": NaN}}',
        422,
        "params.gamma",
        "",
    ),
    ("nan-and-malformed", "focal", b'{"predictions": [[NaN]], "targets": [[0]]', 400, None, "not valid JSON"),
    ("number-beyond-double", "mse", b'{"predictions": [[1e999]], "targets": [[0]]}', 400, None, "infinity"),
    ("deep-nesting", "focal", b"[" * 100_000, 400, None, "depth limit"),
    ("deep-nesting-in-field", "focal", b'{"predictions": ' + b"[" * 100_000, 400, None, "depth limit"),
    ("deep-objects", "focal", b'{"a": ' * 100_000, 400, None, "depth limit"),
    ("nested-beyond-numpy", "mse", {"predictions": NESTED_100, "targets": [[0.0]]}, 422, "predictions", "64 axes"),
    ("empty-body", "focal", b"", 400, None, "empty"),
    ("byte-order-mark", "mse", b'\xef\xbb\xbf{"predictions": [[1]], "targets": [[1]]}', 400, None, "BOM"),
    ("not-utf8", "mse", b'{"predictions": "\xff\xfe"}', 400, None, "UTF-8"),
    ("trailing-content", "mse", b'{"predictions": [[1]], "targets": [[1]]} {}', 400, None, "after document"),
    ("not-an-object", "focal", b"[1, 2]", 422, None, "JSON object"),
    ("not-an-object-bracket-string", "focal", b'["[", [1, 2]]', 422, None, "JSON object"),
    ("missing-input", "focal", {"predictions": [[0.5]]}, 422, "targets", "required"),
    ("unknown-field", "focal", {**FOCAL, "colour": 1}, 422, "colour", "Extra inputs"),
    ("unknown-param", "focal", {**FOCAL, "params": {"gama": 1}}, 422, "params.gama", "Extra inputs"),
    ("param-bounds", "focal", {**FOCAL, "params": {"gamma": -1}}, 422, "params.gamma", "greater than or equal"),
    ("params-not-object", "focal", {**FOCAL, "params": 3}, 422, "params", ""),
    ("bad-reduction", "focal", {**FOCAL, "reduction": "avg"}, 422, "reduction", "mean"),
    ("bad-dtype", "focal", {**FOCAL, "dtype": "float16"}, 422, "dtype", "float32"),
    ("bad-output", "focal", {**FOCAL, "outputs": ["grads"]}, 422, "outputs.0", "gradients"),
    ("shape-mismatch", "focal", {**FOCAL, "targets": [[0, 1, 1], [1, 0, 0]]}, 422, "targets", "expected shape"),
    ("batch-mismatch", "focal", {**FOCAL, "targets": [[0, 1]]}, 422, "targets", "N=2"),
    ("ragged", "focal", {**FOCAL, "predictions": [[0.2, 0.7], [0.9]]}, 422, "predictions", "ragged"),
    # As many numbers as the first row's shape says, but not rectangular.
    (
        "ragged-same-count",
        "mse",
        {"predictions": [[1, 2], [3], [4, 5, 6]], "targets": [[0, 0]] * 3},
        422,
        "predictions",
        "ragged: the sublist at index [1] has 1",
    ),
    (
        "ragged-deeper",
        "focal",
        {**FOCAL, "predictions": [[0.2, [0.7]], [0.9, 0.1]]},
        422,
        "predictions",
        "a list at index [0, 1]",
    ),
    (
        "ragged-balanced",
        "focal",
        {**FOCAL, "predictions": [[0.2, [0.7, 0.1]], [[], 0.1]]},
        422,
        "predictions",
        "a list at index [0, 1]",
    ),
    (
        "ragged-shallower",
        "focal",
        {**FOCAL, "predictions": [[0.2, 0.7], 0.9]},
        422,
        "predictions",
        "a number at index [1]",
    ),
    (
        "ragged-flat",
        "mse",
        {"predictions": [0.5, [1.0], []], "targets": [0, 1, 2]},
        422,
        "predictions",
        "a list at index [1]",
    ),
    ("ragged-empty-row", "focal", {**FOCAL, "predictions": [[], [0.9, 0.1]]}, 422, "predictions", "index [1] has 2"),
    (
        "ragged-weights",
        "mse",
        {"predictions": [1, 2], "targets": [0, 1], "weights": [1, [1]]},
        422,
        "weights",
        "index [1]",
    ),
    ("strings", "focal", {**FOCAL, "predictions": [["a", "b"], ["c", "d"]]}, 422, "predictions", "numbers"),
    (
        "string-number",
        "focal",
        {**FOCAL, "predictions": [[0.2, "0.7"], [0.9, 0.1]]},
        422,
        "predictions",
        "'0.7' at index [0, 1]",
    ),
    (
        "boolean",
        "focal",
        {**FOCAL, "predictions": [[0.2, 0.7], [True, 0.1]]},
        422,
        "predictions",
        "true at index [1, 0]",
    ),
    ("boolean-flat", "mse", {"predictions": [1.0, False], "targets": [0, 1]}, 422, "predictions", "false at index [1]"),
    ("null", "focal", {**FOCAL, "targets": [[0, 1], [1, None]]}, 422, "targets", "null at index [1, 1]"),
    (
        "object",
        "mse",
        {"predictions": [[1.0], [{}]], "targets": [[0], [1]]},
        422,
        "predictions",
        "an object at index [1, 0]",
    ),
    (
        "null-in-weights",
        "mse",
        {"predictions": [1, 2], "targets": [0, 1], "weights": [1, None]},
        422,
        "weights",
        "null at index [1]",
    ),
    ("bracket-in-a-string", "focal", {**FOCAL, "params": {"gamma": "[2"}}, 422, "params.gamma", ""),
    ("bracket-in-a-key", "focal", {**FOCAL, "[": [[1]]}, 422, "[", "Extra inputs"),
    ("scalar", "focal", {**FOCAL, "predictions": 0.5}, 422, "predictions", "list"),
    ("empty", "focal", {"predictions": [], "targets": []}, 422, "predictions", "empty"),
    ("probability-range", "focal", {**FOCAL, "predictions": [[0.2, 1.5], [0.9, 0.1]]}, 422, "predictions", "[0, 1]"),
    ("target-range", "focal", {**FOCAL, "targets": [[0, 2], [1, 0]]}, 422, "targets", "index [0, 1]"),
    ("overflow-to-inf", "mse", {"predictions": [[1e39]], "targets": [[0.0]]}, 422, "predictions", "non-finite"),
    (
        "loss-overflow",
        "mse",
        {"predictions": [[3e38]], "targets": [[-3e38]]},
        422,
        "predictions",
        "the loss of sample [0] is inf",
    ),
    ("weights-length", "focal", {**FOCAL, "weights": [1.0]}, 422, "weights", "one weight per sample"),
    ("weights-negative", "focal", {**FOCAL, "weights": [1.0, -1.0]}, 422, "weights", "index [1]"),
    ("weights-zero-mean", "focal", {**FOCAL, "weights": [0, 0]}, 422, "weights", "positive sum"),
    ("weights-per-channel", "dice", {**DICE, "weights": [[1.0, 1.0]]}, 422, "weights", "one weight per sample"),
    ("label-not-integer", "sparse_cross_entropy", {**SPARSE, "targets": [1.5, 0]}, 422, "targets", "integers"),
    ("label-out-of-range", "sparse_cross_entropy", {**SPARSE, "targets": [3, 0]}, 422, "targets", "[0, 2]"),
    ("label-negative", "sparse_cross_entropy", {**SPARSE, "targets": [-1, 0]}, 422, "targets", "ignore_index"),
    ("all-ignored", "sparse_cross_entropy", {**SPARSE, "targets": [-100, -100]}, 422, "targets", "ignored"),
    ("class-axis-missing", "cross_entropy", {"predictions": [0.5, 0.5], "targets": [1, 0]}, 422, "predictions", "C"),
    (
        "class-weights-length",
        "sparse_cross_entropy",
        {**SPARSE, "params": {"class_weights": [1, 2]}},
        422,
        "params.class_weights",
        "expected 3 values",
    ),
    (
        "pos-weight-length",
        "bce",
        {**FOCAL, "params": {"pos_weight": [1, 2, 3]}},
        422,
        "params.pos_weight",
        "expected 2 values",
    ),
    ("count-negative", "poisson", {**POISSON, "targets": [[0, 3], [-1, 2]]}, 422, "targets", "non-negative"),
    (
        "rate-negative",
        "poisson_nll",
        {**POISSON, "params": {"log_input": False}},
        422,
        "predictions",
        "non-negative; got -1.0 at index [0, 1]",
    ),
    ("poisson-eps", "poisson_nll", {**POISSON, "params": {"eps": 0}}, 422, "params.eps", "greater than 0"),
    ("variance-negative", "gaussian_nll", {**GAUSSIAN, "variance": [[1, 0.5], [-2, 1]]}, 422, "variance", "[1, 0]"),
    ("variance-missing", "gaussian_nll", {"predictions": [[0.5]], "targets": [[0.0]]}, 422, "variance", "required"),
    ("variance-shape", "gaussian_nll", {**GAUSSIAN, "variance": [[1.0], [2.0]]}, 422, "variance", "expected shape"),
    ("variance-overflow", "gaussian_nll", {**GAUSSIAN, "variance": [[1e39, 1], [1, 1]]}, 422, "variance", "non-finite"),
    ("quantile-above-one", "quantile", {**FOCAL, "params": {"quantile": 1.5}}, 422, "params.quantile", "less than"),
    ("quantile-below-zero", "pinball", {**FOCAL, "params": {"quantile": -0.1}}, 422, "params.quantile", "greater than"),
    ("beta-negative", "smooth_l1", {**FOCAL, "params": {"beta": -0.5}}, 422, "params.beta", "greater than or equal"),
    (
        "overflow",
        "poisson",
        {**POISSON, "predictions": [[0.5, 1], [100, 0]]},
        422,
        "predictions",
        "sample [1] is inf: the inputs overflow float32",
    ),
    ("ctc-blank-not-a-class", "ctc", {**CTC, "params": {"blank": 3}}, 422, "params.blank", "C = 3"),
    ("ctc-blank-negative", "ctc", {**CTC, "params": {"blank": -1}}, 422, "params.blank", "greater than or equal"),
    ("ctc-blank-in-target", "ctc", {**CTC, "targets": [[1, 0], [1, 1]]}, 422, "targets", "index [0, 1] is the blank"),
    (
        "ctc-blank-param-in-target",
        "ctc",
        {**CTC, "params": {"blank": 2}},
        422,
        "targets",
        "label 2 at index [0, 1] is the blank",
    ),
    ("ctc-label-range", "ctc", {**CTC, "targets": [[1, 3], [1, 1]]}, 422, "targets", "outside [0, 2]"),
    (
        "ctc-impossible",
        "ctc",
        {**CTC, "input_lengths": [4, 2]},
        422,
        "input_lengths",
        "sample 1 has input_length 2, but its target (target_length 2, 1 adjacent repeats",
    ),
    ("ctc-impossible-hint", "ctc", {**CTC, "input_lengths": [1, 3]}, 422, "input_lengths", "zero_infinity=true"),
    ("ctc-input-length-above-T", "ctc", {**CTC, "input_lengths": [5, 3]}, 422, "input_lengths", "outside [0, T=4]"),
    ("ctc-target-length-above-S", "ctc", {**CTC, "target_lengths": [3, 2]}, 422, "target_lengths", "[0, S=2]"),
    ("ctc-length-not-integer", "ctc", {**CTC, "input_lengths": [3.5, 3]}, 422, "input_lengths", "integers"),
    ("ctc-length-negative", "ctc", {**CTC, "target_lengths": [-1, 2]}, 422, "target_lengths", "count -1 at index [0]"),
    ("ctc-lengths-batch", "ctc", {**CTC, "input_lengths": [4]}, 422, "input_lengths", "N=2"),
    ("ctc-predictions-rank", "ctc", {**CTC, "predictions": LOG_THIRD}, 422, "predictions", "expected shape (N, T, C)"),
    ("ctc-non-finite", "ctc", {**CTC, "predictions": [LOG_THIRD, [[1e39] * 3] * 4]}, 422, "predictions", "non-finite"),
    ("unknown-loss", "focall", FOCAL, 404, "name", "did you mean focal"),
    # perceptual on a server without LOSSD_FEATURE_MODELS (tests/service/test_perceptual.py has a configured one)
    ("not-configured", "perceptual", IMAGES, 409, "params.feature_model", "LOSSD_FEATURE_MODELS=name="),
    (
        "not-configured-named",
        "perceptual",
        {**IMAGES, "params": {"feature_model": "vgg"}},
        409,
        "params.feature_model",
        "none is",
    ),
    (
        "perceptual-bad-param",
        "perceptual",
        {**IMAGES, "params": {"feature_model": 3}},
        422,
        "params.feature_model",
        "string",
    ),
    ("perceptual-missing-input", "perceptual", {"predictions": IMAGES["predictions"]}, 422, "targets", "required"),
    # classification losses
    ("class-weights-required", "weighted_cross_entropy", SPARSE, 422, "params.class_weights", "Field required"),
    (
        "class-weights-required-in-params",
        "weighted_cross_entropy",
        {**SPARSE, "params": {"from_logits": True}},
        422,
        "params.class_weights",
        "Field required",
    ),
    (
        "class-weight-negative",
        "weighted_cross_entropy",
        {**SPARSE, "params": {"class_weights": [1, -1, 2]}},
        422,
        "params.class_weights.1",
        "greater than or equal to 0",
    ),
    ("nll-label-range", "nll", {**SPARSE, "targets": [3, 0]}, 422, "targets", "[0, 2] or ignore_index -100"),
    ("nll-non-finite", "nll", {**SPARSE, "predictions": [[0, 0, 1e39], [0, 0, 0]]}, 422, "predictions", "index [0, 2]"),
    ("kl-target-range", "kl_divergence", {**FOCAL, "targets": [[1.5, 0], [1, 0]]}, 422, "targets", "[0.0, 1.0]"),
    ("kl-labels-not-accepted", "kld", {**FOCAL, "targets": [1, 0]}, 422, "targets", "expected shape (N=2, C=2)"),
    ("hinge-target-value", "hinge", {**SIGNED, "targets": [[1, 2], [-1, 1]]}, 422, "targets", "one of -1, 0, 1"),
    ("hinge-soft-target", "squared_hinge", {**SIGNED, "targets": [[1, 0.5], [-1, 1]]}, 422, "targets", "index [0, 1]"),
    ("hinge-shape", "hinge", {**SIGNED, "targets": [[1], [-1]]}, 422, "targets", "expected shape"),
    (
        "categorical-hinge-target-range",
        "categorical_hinge",
        {**SCORES, "targets": [[0, 2, 0], [1, 0, 0]]},
        422,
        "targets",
        "[0.0, 1.0]",
    ),
    ("categorical-hinge-label-range", "categorical_hinge", {**SCORES, "targets": [3, 0]}, 422, "targets", "[0, 2]"),
    ("multi-margin-rank", "multi_margin", {**SCORES, "predictions": [[[0.2, 0.1]]]}, 422, "predictions", "(N, C)"),
    ("multi-margin-label-range", "multi_margin", {**SCORES, "targets": [3, 0]}, 422, "targets", "[0, 2]"),
    ("multi-margin-p", "multi_margin", {**SCORES, "params": {"p": 3}}, 422, "params.p", "1 or 2"),
    ("focal-label-range", "categorical_focal", {**SPARSE, "targets": [3, 0]}, 422, "targets", "outside [0, 2]"),
    ("focal-label-integer", "categorical_focal", {**SPARSE, "targets": [1.5, 0]}, 422, "targets", "integers"),
    (
        "focal-alpha-negative",
        "categorical_focal",
        {**SPARSE, "params": {"alpha": -0.5}},
        422,
        "params.alpha",
        "greater than or equal to 0",
    ),
    (
        "focal-alpha-list-negative",
        "categorical_focal",
        {**SPARSE, "params": {"alpha": [1, -0.5, 1]}},
        422,
        "params.alpha.1",
        "greater than or equal to 0",
    ),
    (
        "focal-alpha-length",
        "categorical_focal",
        {**SPARSE, "params": {"alpha": [1, 2]}},
        422,
        "params.alpha",
        "expected 3 values",
    ),
    ("pos-weight-type", "bce", {**FOCAL, "params": {"pos_weight": "x"}}, 422, "params.pos_weight", "is a JSON string"),
    ("unknown-param-any-text", "bce", {**FOCAL, "params": {"pos-weight": 1}}, 422, "params.pos-weight", "Extra"),
    ("pair-label", "contrastive", {**PAIRS, "targets": [1, 2]}, 422, "targets", "one of 0, 1"),
    ("pair-label-signed", "contrastive", SIGNED_PAIRS, 422, "targets", "one of 0, 1"),
    ("pair-dims", "contrastive", {**PAIRS, "x2": [[1.0, 0.0, 0.0], [0.5, 1.0, 0.0]]}, 422, "x2", "(N=2, D=2)"),
    ("pair-targets-length", "contrastive", {**PAIRS, "targets": [1]}, 422, "targets", "(N=2)"),
    ("pair-targets-2d", "contrastive", {**PAIRS, "targets": [[1], [0]]}, 422, "targets", "(N=2)"),
    ("pair-margin", "contrastive", {**PAIRS, "params": {"margin": -1}}, 422, "params.margin", "greater than or equal"),
    ("cosine-label", "cosine_embedding", PAIRS, 422, "targets", "one of -1, 1"),
    ("cosine-margin", "cosine_embedding", {**SIGNED_PAIRS, "params": {"margin": 2}}, 422, "params.margin", "less than"),
    ("triplet-dims", "triplet", {**TRIPLET, "negative": [[0.5, 0.5, 0.5]]}, 422, "negative", "(N=1, D=2)"),
    ("triplet-batch", "triplet", {**TRIPLET, "positive": [[1.0, 0.0], [0.0, 1.0]]}, 422, "positive", "N=1"),
    ("triplet-p", "triplet", {**TRIPLET, "params": {"p": 0.5}}, 422, "params.p", "greater than or equal to 1"),
    ("triplet-margin", "triplet", {**TRIPLET, "params": {"margin": 0}}, 422, "params.margin", "greater than 0"),
    ("triplet-squared-p", "triplet", {**TRIPLET, "params": {"squared": True, "p": 3}}, 422, "params", "squared=false"),
    ("triplet-non-finite", "triplet", {**TRIPLET, "anchor": [[0.0, 1e39]]}, 422, "anchor", "non-finite"),
    ("ranking-2d", "margin_ranking", {"x1": [[0.5]], "x2": [0.1], "targets": [1]}, 422, "x1", "expected shape (N)"),
    ("ranking-label", "margin_ranking", {"x1": [0.5], "x2": [0.1], "targets": [0]}, 422, "targets", "one of -1, 1"),
    ("batch-level-weights", "wasserstein", {**GAN_SCORES, "weights": [1, 1, 1]}, 422, "weights", "whole batch"),
    (
        "batch-level-weights-none",
        "adversarial",
        {**LOGITS, "weights": [1], "reduction": "none"},
        422,
        "weights",
        "no sample weights",
    ),
    ("gan-mode", "wasserstein", {**GAN_SCORES, "params": {"mode": "discriminator"}}, 422, "params.mode", "critic"),
    (
        "gan-formulation",
        "adversarial",
        {**LOGITS, "params": {"formulation": "wgan"}},
        422,
        "params.formulation",
        "non_saturating",
    ),
    ("scores-2d", "wasserstein", {**GAN_SCORES, "fake_scores": [[0.0, 1.0]]}, 422, "fake_scores", "expected shape (M)"),
    ("scores-empty", "wasserstein", {**GAN_SCORES, "fake_scores": []}, 422, "fake_scores", "empty"),
    ("scores-missing", "adversarial", {"real_logits": [1.0]}, 422, "fake_logits", "required"),
    ("bins-range", "emd", {**BINS, "predictions": [[0.2, 1.3, 0.5]]}, 422, "predictions", "[0.0, 1.0]"),
    ("bins-negative", "emd", {**BINS, "targets": [[0.5, -0.1, 0.6]]}, 422, "targets", "index [0, 1]"),
    ("bins-zero-row", "earth_movers", {**BINS, "targets": [[0, 0, 0]]}, 422, "targets", "positive sum"),
    ("bins-count", "earth_movers", {**BINS, "targets": [[0.0, 1.0]]}, 422, "targets", "(N=1, K=3)"),
    ("bins-p", "earth_movers", {**BINS, "params": {"p": 3}}, 422, "params.p", "1 or 2"),
    ("float32-overflow", "contrastive", {**PAIRS, "x1": [[1e20, 0.0], [1.0, 1.0]]}, 422, "x1", "overflow float32"),
    (
        "float32-sum-overflow",
        "mse",
        {"predictions": [[1.7e19], [1.7e19]], "targets": [[0.0], [0.0]], "reduction": "sum"},
        422,
        None,
        "reduced loss overflows float32",
    ),
    (
        "dice-probability-range",
        "dice",
        {**MASKS, "predictions": [[[0.2, 1.7, 0.4]], [[0.9, 0.1, 0.5]]]},
        422,
        "predictions",
        "lie in [0.0, 1.0]",
    ),
    ("dice-target-range", "iou", {**MASKS, "targets": [[[0, 2, 1]], [[1, 0, 0]]]}, 422, "targets", "[0.0, 1.0]"),
    ("dice-shape-mismatch", "tversky", {**MASKS, "targets": [[[0, 1]], [[1, 0]]]}, 422, "targets", "expected shape"),
    ("dice-channel-axis-missing", "dice", {"predictions": [0.5, 0.5], "targets": [1, 0]}, 422, "predictions", "C"),
    (
        "dice-background-one-channel",
        "dice",
        {**MASKS, "params": {"include_background": False}},
        422,
        "params.include_background",
        "needs at least 2 channels",
    ),
    (
        "dice-softmax-one-channel",
        "iou",
        {**MASKS, "params": {"activation": "softmax"}},
        422,
        "params.activation",
        "use 'sigmoid'",
    ),
    (
        "dice-activation-unknown",
        "dice",
        {**MASKS, "params": {"activation": "relu"}},
        422,
        "params.activation",
        "'sigmoid'",
    ),
    (
        "dice-smooth-dr-zero-empty-class",
        "dice",
        {"predictions": [[[0.0, 0.0]], [[0.9, 0.1]]], "targets": [[[0, 0]], [[1, 0]]], "params": {"smooth_dr": 0}},
        422,
        "params.smooth_dr",
        "ratio 0/0 for sample 0, kept class 0",
    ),
    (
        "tversky-smooth-dr-zero-no-false-weight",
        "tversky",
        {"predictions": [[[0.5, 0.0]]], "targets": [[[0, 0]]], "params": {"smooth_dr": 0, "alpha": 0}},
        422,
        "params.smooth_dr",
        "ratio 0/0 for sample 0",
    ),
    ("dice-smooth-dr-negative", "dice", {**MASKS, "params": {"smooth_dr": -1}}, 422, "params.smooth_dr", "greater"),
    (
        "dice-class-weights-per-kept-class",
        "dice",
        {**MASKS2, "params": {"class_weights": [1.0, 2.0], "include_background": False}},
        422,
        "params.class_weights",
        "expected 1 values, one per kept class",
    ),
    (
        "focal-class-weights-per-channel",
        "focal",
        {**MASKS2, "params": {"class_weights": [1.0, 2.0, 3.0]}},
        422,
        "params.class_weights",
        "expected 2 values, one per channel (axis 1",
    ),
    (
        "dice-label-map-out-of-range",
        "dice",
        {"predictions": MASKS2["predictions"], "targets": [[0, 2, 1], [1, 0, 0]]},
        422,
        "targets",
        "label 2 at index [0, 1] is outside [0, 1]",
    ),
    ("tversky-alpha-negative", "tversky", {**MASKS, "params": {"alpha": -0.5}}, 422, "params.alpha", "greater"),
    (
        "ssim-image-too-small",
        "ssim",
        {**SSIM, "params": {"window_size": 13}},
        422,
        "predictions",
        "at least window_size pixels high (got H=11)",
    ),
    ("ssim-window-even", "ssim", {**SSIM, "params": {"window_size": 8}}, 422, "params.window_size", "odd"),
    ("ssim-sigma-bound", "ssim", {**SSIM, "params": {"sigma": 1000}}, 422, "params.sigma", "less than"),
    ("ssim-not-an-image", "ssim", {"predictions": IMAGE[0], "targets": IMAGE[0]}, 422, "predictions", "expected shape"),
    (
        "ssim-nan",
        "ssim",
        {**SSIM, "targets": [[[[0.0] * 11] * 10 + [[0.0] * 10 + [1e39]]]]},
        422,
        "targets",
        "non-finite",
    ),
]


@pytest.fixture(params=["orjson", "simdjson"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each table runs through both JSON paths: orjson for small bodies, simdjson above SMALL_BODY."""
    if request.param == "simdjson":
        monkeypatch.setattr(json_arrays, "SMALL_BODY", 0)
    return str(request.param)


@pytest.mark.parametrize(
    ("loss", "body", "status", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_a_clear_4xx(
    client: TestClient,
    decoder: str,
    caplog: pytest.LogCaptureFixture,
    loss: str,
    body: Any,
    status: int,
    field: str | None,
    words: str,
) -> None:
    caplog.set_level(logging.INFO)
    if isinstance(body, bytes):
        response = client.post(f"/loss/{loss}", content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.post(f"/loss/{loss}", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    assert problem.get("field") == field
    assert words in problem["detail"]
    assert_no_traceback(caplog)


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A client error is the client's: nothing is logged as a failure of the server's."""
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text


V2_MSE = {
    "inputs": [
        {"name": "predictions", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.0]},
        {"name": "targets", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 1.0]},
    ]
}


def binary_mse(size: Any, shape: list[int], blobs: bytes) -> tuple[bytes, dict[str, str]]:
    """An MSE request whose predictions claim ``size`` bytes of binary data for ``shape``."""
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "predictions", "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": size}},
                {"name": "targets", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 1.0]},
            ]
        }
    )
    return header + blobs, {"Inference-Header-Content-Length": str(len(header))}


JSON_BODY = orjson.dumps(V2_MSE)
EIGHT = bytes(8)
# Inflates to 65 MiB, past the default LOSSD_MAX_BODY_BYTES of 64 MiB, from ~65 KiB.
BOMB = gzip.compress(bytes(65 * 1024 * 1024), compresslevel=9)

# (id, body, headers, status, words the error must contain)
V2_CASES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("malformed-json", b'{"inputs": [', {}, 400, "not valid JSON"),
    ("nan-literal", JSON_BODY.replace(b"0.5", b"NaN"), {}, 400, "predictions: non-finite value nan at index [0, 0]"),
    ("infinity-literal", JSON_BODY.replace(b"0.5", b"Infinity"), {}, 400, "non-finite value inf at index [0, 0]"),
    ("minus-infinity", JSON_BODY.replace(b"1.0]", b"-Infinity]", 1), {}, 400, "non-finite value -inf at index [0, 1]"),
    ("nan-and-malformed", JSON_BODY.replace(b"0.5", b"NaN")[:-1], {}, 400, "not valid JSON"),
    ("deep-nesting", b"[" * 100_000, {}, 400, "depth limit"),
    ("header-not-an-object", b'["[", {"inputs": 1}]', {}, 400, "Input should be a valid dictionary"),
    ("inputs-not-a-list", b'{"inputs": {"name": "[,]"}}', {}, 400, "inputs: Input should be a valid list"),
    ("data-nested-deep", JSON_BODY.replace(b"[0.5,1.0]", b"[" * 500 + b"0" + b"]" * 500), {}, 400, "list of numbers"),
    ("data-nested-65", JSON_BODY.replace(b"[0.5,1.0]", b"[" * 65 + b"0" + b"]" * 65), {}, 400, "64 axes"),
    (
        "data-ragged",
        JSON_BODY.replace(b"[0.5,1.0]", b"[[0.5],[1.0,2.0]]"),
        {},
        400,
        "ragged: the sublist at index [1] has 2",
    ),
    ("data-ragged-deeper", JSON_BODY.replace(b"[0.5,1.0]", b"[0.5,[1.0]]"), {}, 400, "a list at index [1]"),
    (
        "data-ragged-balanced",
        JSON_BODY.replace(b"[0.5,1.0]", b"[[0.5,[1.0]],[[],2.0]]"),
        {},
        400,
        "a list at index [0, 1]",
    ),
    ("data-string", JSON_BODY.replace(b"[0.5,1.0]", b'[0.5,"1.0"]'), {}, 400, "input predictions: data must be"),
    ("data-boolean", JSON_BODY.replace(b"[0.5,1.0]", b"[0.5,true]"), {}, 400, "true at index [1]"),
    (
        "data-null",
        JSON_BODY.replace(b"[0.0,1.0]", b"[null,1.0]"),
        {},
        400,
        "input targets: data must be a rectangular nested list of numbers; got null at index [0]",
    ),
    (
        "data-int-beyond-int64",
        JSON_BODY.replace(b'"FP32","data":[0.5,1.0]', b'"INT64","data":[1,18446744073709551616]'),
        {},
        400,
        "list of numbers",
    ),
    (
        "data-int-string",
        JSON_BODY.replace(b'"FP32","data":[0.5,1.0]', b'"INT64","data":[1,"2"]'),
        {},
        400,
        "the string '2' at index [1]",
    ),
    ("data-nan-nested", JSON_BODY.replace(b"[0.5,1.0]", b"[[0.5,NaN]]"), {}, 400, "nan at index [0, 1]"),
    ("header-length-past-body", JSON_BODY, {"Inference-Header-Content-Length": "100000"}, 400, "does not fit"),
    ("header-length-zero", JSON_BODY, {"Inference-Header-Content-Length": "0"}, 400, "does not fit"),
    ("header-length-negative", JSON_BODY, {"Inference-Header-Content-Length": "-5"}, 400, "does not fit"),
    ("header-length-not-integer", JSON_BODY, {"Inference-Header-Content-Length": "12a"}, 400, "not an integer"),
    ("header-length-short", JSON_BODY, {"Inference-Header-Content-Length": "10"}, 400, "not valid JSON"),
    ("binary-size-short", *binary_mse(8, [1, 2], EIGHT[:4]), 400, "the body ends before its 8 bytes"),
    ("binary-size-wrong", *binary_mse(12, [1, 2], bytes(12)), 400, "does not match shape [1, 2]"),
    ("binary-size-text", *binary_mse("8", [1, 2], EIGHT), 400, "binary_data_size '8' is not an integer"),
    ("binary-size-bool", *binary_mse(True, [1, 2], EIGHT), 400, "binary_data_size True is not an integer"),
    ("binary-bytes-unclaimed", *binary_mse(8, [1, 2], EIGHT * 2), 400, "8 bytes of binary data that no input"),
    ("binary-shape-huge", *binary_mse(8, [2**62, 2**62], EIGHT), 400, "does not match shape"),
    ("binary-shape-negative", *binary_mse(8, [-1, -2], EIGHT), 400, "negative dimension"),
    ("shape-huge-json", JSON_BODY.replace(b"[1,2]", b"[4611686018427387904,2]", 1), {}, 400, "needs"),
    ("not-gzip", b"plain", {"Content-Encoding": "gzip"}, 400, "not valid gzip data"),
    ("gzip-truncated", gzip.compress(JSON_BODY)[:-12], {"Content-Encoding": "gzip"}, 400, "not valid gzip data"),
    ("deflate-invalid", b"plain", {"Content-Encoding": "deflate"}, 400, "not valid deflate data"),
    ("unsupported-encoding", JSON_BODY, {"Content-Encoding": "br"}, 415, "unsupported Content-Encoding 'br'"),
    ("gzip-bomb", BOMB, {"Content-Encoding": "gzip"}, 413, "inflates to more than the limit"),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"), [c[1:] for c in V2_CASES], ids=[c[0] for c in V2_CASES]
)
def test_bad_v2_input_is_a_clear_4xx(
    client: TestClient,
    decoder: str,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, str],
    status: int,
    words: str,
) -> None:
    caplog.set_level(logging.INFO)
    response = client.post("/v2/models/mse/infer", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json().keys() == {"error"}
    assert words in response.json()["error"]
    assert_no_traceback(caplog)


def test_compressed_v2_bodies_still_work(client: TestClient) -> None:
    for encoding, packed in (("gzip", gzip.compress(JSON_BODY)), ("deflate", zlib.compress(JSON_BODY))):
        response = client.post("/v2/models/mse/infer", content=packed, headers={"Content-Encoding": encoding})
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [0.125]


def test_unknown_loss_lists_close_matches(client: TestClient) -> None:
    response = client.get("/losses/cross_entropyy")
    assert response.status_code == 404
    assert "cross_entropy" in response.json()["matches"]


def test_unknown_route_is_a_problem(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["title"] == "Not Found"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_wrong_content_type_is_415(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/loss/mse", content=b'{"predictions": [[1]], "targets": [[1]]}', headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["field"] == "content-type"
    assert "application/json" in response.json()["detail"]


def test_json_with_charset_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/loss/mse",
        content=b'{"predictions": [[1]], "targets": [[1]]}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200
    assert response.json()["loss"] == 0


def test_a_bug_is_a_bare_500_without_traceback(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("service.compute.decode_inputs", broken)
    response = client.post("/loss/mse", json={"predictions": [[1]], "targets": [[1]]})
    assert response.status_code == 500
    assert response.json()["title"] == "Internal Server Error"
    assert "secret" not in response.text and "Traceback" not in response.text


def test_activation_decides_whether_predictions_are_probabilities(client: TestClient) -> None:
    """Logits outside [0, 1] are fine with a sigmoid or softmax activation (Input.probabilities_when)."""
    logits = {"predictions": [[[2.5, -1.0], [0.3, 4.0]]], "targets": [[[1, 0], [0, 1]]]}
    assert client.post("/loss/dice", json=logits).status_code == 422
    for activation in ("sigmoid", "softmax"):
        response = client.post("/loss/dice", json={**logits, "params": {"activation": activation}})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("encoding", ["GZIP", "Gzip", " gzip ", "DEFLATE", "Identity"])
def test_content_encodings_are_case_insensitive(client: TestClient, encoding: str) -> None:
    packs: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress, "identity": bytes}
    packed = packs[encoding.strip().lower()](JSON_BODY)
    response = client.post("/v2/models/mse/infer", content=packed, headers={"Content-Encoding": encoding})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [0.125]


def v2_sparse(labels: list[int], datatype: str, binary: bool) -> tuple[bytes, dict[str, str]]:
    """sparse_cross_entropy on two samples whose labels come as ``datatype``."""
    scores = {"name": "predictions", "shape": [2, 3], "datatype": "FP32", "data": [0.2, 0.5, 0.3, 0.1, 0.1, 0.8]}
    targets: dict[str, Any] = {"name": "targets", "shape": [2], "datatype": datatype}
    if not binary:
        header = orjson.dumps({"inputs": [scores, {**targets, "data": labels}]})
        return header, {}
    blob = np.array(labels, dtype={"UINT64": np.uint64, "UINT32": np.uint32, "INT64": np.int64}[datatype]).tobytes()
    header = orjson.dumps({"inputs": [scores, {**targets, "parameters": {"binary_data_size": len(blob)}}]})
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize("binary", [False, True])
def test_unsigned_labels_beyond_int64_are_400_not_ignore_index(client: TestClient, binary: bool) -> None:
    """2**64 - 100 as int64 is -100, sparse_cross_entropy's ignore_index: refused, not ignored."""
    body, headers = v2_sparse([2**64 - 100, 0], "UINT64", binary)
    response = client.post("/v2/models/sparse_cross_entropy/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "targets" in error and "18446744073709551516" in error and "[0]" in error
    for datatype in ("UINT64", "UINT32", "INT64"):  # labels in range still count, whatever their type
        body, headers = v2_sparse([2, 0], datatype, binary)
        response = client.post("/v2/models/sparse_cross_entropy/infer", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"][0] == pytest.approx(-(np.log(0.3) + np.log(0.1)) / 2, rel=1e-6)


@pytest.mark.parametrize(
    ("params", "dtype", "field"),
    [
        ({"gamma": 1e308}, "float32", "params.gamma"),
        ({"alpha": -1e39}, "float32", "params.alpha"),
        ({"alpha": [0.5, 1e39]}, "float32", "params.alpha"),  # categorical_focal: one per class
    ],
)
def test_a_float_param_beyond_the_dtype_is_422_naming_it(
    client: TestClient, params: dict[str, Any], dtype: str, field: str
) -> None:
    name = "categorical_focal" if isinstance(params.get("alpha"), list) else "focal"
    response = client.post(f"/loss/{name}", json={**FOCAL, "params": params, "dtype": dtype})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and dtype in response.json()["detail"]


def test_a_float_param_within_float64_is_taken_there(client: TestClient) -> None:
    response = client.post("/loss/focal", json={**FOCAL, "params": {"gamma": 1e300}, "dtype": "float64"})
    assert response.status_code == 200, response.text
    assert client.post("/loss/focal", json={**FOCAL, "params": {"gamma": 1e300}}).json()["field"] == "params.gamma"


def test_an_ad_hoc_composite_term_param_beyond_the_dtype_is_422_naming_it(client: TestClient) -> None:
    terms = [{"loss": "focal", "params": {"gamma": 1e308}}, {"loss": "bce", "weight": 0.5}]
    response = client.post("/loss/composite", json={**FOCAL, "terms": terms})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "terms[0].params.gamma"
    response = client.post("/loss/composite", json={**FOCAL, "terms": [{"loss": "bce", "weight": 1e39}]})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "terms[0].weight"


def test_an_int_param_beyond_int64_is_422_naming_it(client: TestClient) -> None:
    response = client.post("/loss/sparse_cross_entropy", json={**SPARSE, "params": {"ignore_index": 2**63}})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "params.ignore_index" and "int64" in response.json()["detail"]
