"""JSON bodies whose numeric arrays go straight into numpy buffers.

simdjson parses the body and copies each numeric array into a float64 buffer without a
Python object per element (orjson + ``np.asarray`` builds one float object per element, ~10x
slower for 1M elements). The rest of the document becomes the Python values orjson would
give, for the pydantic envelope. A body simdjson refuses takes the slow path: orjson, for its
error messages; a body that only NaN/Infinity literals keep from being JSON is read by the
standard library, so that the 422 names the input and the index of the non-finite value.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import simdjson

from service.errors import ServiceError, invalid, malformed, too_many_elements

SMALL_BODY = 2048
"""Bodies this small are faster through orjson and ``np.asarray`` (simdjson's fixed cost per
document and per array is larger than the per-element cost it saves)."""
MAX_AXES = 64
"""numpy's limit on the number of axes (NPY_MAXDIMS)."""
BOM = b"\xef\xbb\xbf"
IS_NUMERIC = "a rectangular nested list of numbers"


@dataclass(frozen=True)
class BadArray:
    """A numeric field that cannot become an array: its error is raised where the field is
    decoded (``service.arrays.to_array``), after the envelope's own checks, as before."""

    error: ServiceError


_local = threading.local()


def _parser() -> Any:
    # One parser per thread (large bodies are decoded on worker threads): reusing it keeps its
    # buffers, which halves the time for a large body; a parser is not safe across threads.
    # It keeps ~2.7x the largest body it read (at most KEPT_PARSER_BYTES), until its thread
    # ends (anyio's workers end after 10 s idle; the event loop's thread only reads bodies
    # below OFF_LOOP_BYTES).
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


KEPT_PARSER_BYTES = 32 << 20
"""Bodies above this are parsed by a parser of their own, dropped with the request: a kept
parser holds ~2.7x the largest body it read (so up to 170 MB for a 64 MiB body)."""


def _parse(body: bytes) -> Any:
    if len(body) > KEPT_PARSER_BYTES:
        return simdjson.Parser().parse(body)
    try:
        return _parser().parse(body)
    except RuntimeError as exc:
        if "re-use a parser" not in str(exc):
            raise
        # A proxy of the previous document outlived it (held by a traceback): start afresh.
        _local.parser = simdjson.Parser()
        return _local.parser.parse(body)


def loads(body: bytes, numeric: Callable[[str], bool], limit: int | None = None) -> Any:
    """The document as orjson would give it, but the members of a top-level object that
    ``numeric`` names and that hold arrays are float64 ndarrays at their nested shape (or a
    ``BadArray``). ``limit`` (LOSSD_MAX_ELEMENTS) refuses an array before it is copied. Small
    bodies, and those for the slow path, keep their arrays as lists (``from_list`` reads them)."""
    if len(body) < SMALL_BODY:
        return slow_document(body)
    decoder = _Decoder(limit)
    result = decoder.document(body, lambda key, value: decoder.array(key, value, "d") if numeric(key) else None)
    if result is _SLOW:
        return slow_document(body)
    return decoder.settle(body, result, _top_level_arrays(result))


def loads_infer_header(header: bytes, datatype_of: Callable[[Any], str], limit: int | None = None) -> Any:
    """An inference request header: each ``inputs[i].data`` array is an ndarray (or a
    ``BadArray``) read as ``datatype_of(datatype)``: 'd', 'i' or 'u' (simdjson's buffer types)."""
    if len(header) < SMALL_BODY:
        return slow_infer_header(header)
    decoder = _Decoder(limit)
    result = decoder.document(
        header, lambda key, value: decoder.tensors(value, datatype_of) if key == "inputs" else None
    )
    if result is _SLOW:
        return slow_infer_header(header)
    return decoder.settle(header, result, _tensor_arrays(result))


MANY_KEYS = 64
"""A top-level object with more members is no request's (they have a handful): orjson reads it.
simdjson finds a member by scanning, so reading them one by one is quadratic (3M unknown
members took minutes)."""
_SLOW: Any = object()
"""The body needs the slow path (simdjson refused it, or its object repeats a key)."""
STRUCTURAL = b"[],"
_NOT_STRUCTURAL = bytes(c for c in range(256) if c not in STRUCTURAL)


def _unique_keys(document: Any) -> list[str] | None:
    """An object's keys, or None when one repeats (orjson keeps the last, simdjson's lookup
    finds the first)."""
    keys = list(document.keys())
    return keys if len(set(keys)) == len(keys) else None


def _top_level_arrays(result: Any) -> Iterator[tuple[dict[str, Any], str, str]]:
    for key, value in result.items() if isinstance(result, dict) else ():
        if isinstance(value, np.ndarray):
            yield result, key, key


def _tensor_arrays(result: Any) -> Iterator[tuple[dict[str, Any], str, str]]:
    inputs = result.get("inputs") if isinstance(result, dict) else None
    for index, tensor in enumerate(inputs if isinstance(inputs, list) else ()):
        if isinstance(tensor, dict) and isinstance(tensor.get("data"), np.ndarray):
            yield tensor, "data", f"inputs[{index}].data"


Skeleton = bytes | tuple[int, ...]
"""A value's '[', ']' and ',' as they stand in minified JSON (objects' braces left out), or the
shape of a numeric array, whose skeleton follows from it."""


class _Decoder:
    """Converts one document, and writes down its skeleton: the body's own skeleton equal to
    it proves each numeric array as rectangular as its first elements say (``settle``)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.skeleton: list[Skeleton] = []
        self.exact = True
        """False when a string holds '[', ']' or ',' (the body's skeleton would not be its values')."""
        self.refused = False

    def document(self, body: bytes, special: Callable[[str, Any], Any]) -> Any:
        if body.startswith(BOM):  # simdjson skips a byte-order mark; JSON text must not carry one
            return _SLOW
        try:
            document = _parse(body)
        except (ValueError, RuntimeError, UnicodeDecodeError):
            return _SLOW
        try:
            return self._members(document, special) if isinstance(document, simdjson.Object) else self.plain(document)
        except RecursionError:  # values nested deep where no array is expected: orjson reads them
            return _SLOW
        except KeyError:  # a key simdjson lists but cannot look up (one holding a NUL)
            return _SLOW
        finally:
            del document  # the parser is reused only once no proxy of this document is left

    def _members(self, document: Any, special: Callable[[str, Any], Any]) -> Any:
        keys = _unique_keys(document)
        if keys is None:
            return _SLOW
        if len(keys) > MANY_KEYS:
            return _SLOW
        result: dict[str, Any] = {}
        for position, key in enumerate(keys):
            if position:
                self.skeleton.append(b",")
            self.count_string(key)
            value = document[key]
            converted = special(key, value) if isinstance(value, simdjson.Array) else None
            result[key] = self.plain(value) if converted is None else converted
        return result

    def count_string(self, text: str) -> None:
        if "[" in text or "]" in text or "," in text:
            self.exact = False

    def plain(self, value: Any) -> Any:
        converted: Any
        if isinstance(value, simdjson.Array):
            converted = value.as_list()
        elif isinstance(value, simdjson.Object):
            converted = value.as_dict()
        else:
            converted = value
        self.skeleton.append(self._skeleton(converted))
        return converted

    def _skeleton(self, value: Any) -> bytes:
        if isinstance(value, list):
            return b"[" + b",".join([self._skeleton(item) for item in value]) + b"]"
        if isinstance(value, dict):
            if self.exact and any("[" in key or "]" in key or "," in key for key in value):
                self.exact = False
            containers = (list, dict, str)
            # Scalars' skeleton is empty: only containers and strings need a look (an object of
            # 3M unknown params is 3M scalars).
            return b",".join([self._skeleton(item) if isinstance(item, containers) else b"" for item in value.values()])
        if isinstance(value, str):
            self.count_string(value)
        return b""

    def tensors(self, inputs: Any, datatype_of: Callable[[Any], str]) -> list[Any]:
        converted: list[Any] = []
        self.skeleton.append(b"[")
        for index in range(len(inputs)):
            if index:
                self.skeleton.append(b",")
            tensor = inputs[index]
            if isinstance(tensor, simdjson.Object):
                field = f"inputs[{index}].data"
                datatype = datatype_of(tensor.get("datatype"))
                members = self._members(tensor, self._data(field, datatype))
                converted.append(self.plain(tensor) if members is _SLOW else members)
            else:
                converted.append(self.plain(tensor))
            del tensor
        self.skeleton.append(b"]")
        return converted

    def _data(self, field: str, of_type: str) -> Callable[[str, Any], Any]:
        return lambda key, value: self.array(field, value, of_type) if key == "data" else None

    def array(self, field: str, array: Any, of_type: str) -> np.ndarray | BadArray:
        shape: list[int] = []
        node = array
        while isinstance(node, simdjson.Array):
            if len(shape) == MAX_AXES:
                self.exact = False  # its skeleton is left to the slow path, which orjson reads deep
                return BadArray(invalid(field, f"must be {IS_NUMERIC} (nested deeper than numpy's limit of 64 axes)"))
            shape.append(len(node))
            if not shape[-1]:
                break
            node = node[0]
        del node
        size = math.prod(shape)
        if self.limit is not None and size > self.limit:
            self.refused = True
            self.skeleton.append(tuple(shape))
            return BadArray(too_many_elements(self.limit, field))
        try:
            buffer = array.as_buffer(of_type=of_type)
        except TypeError:  # a string, bool, null or object among the numbers
            if of_type != "d":
                return self.array(field, array, "d")  # floats in an integer tensor: cast as numpy would
            return self._bad(field, array)
        except ValueError:  # an integer beyond the tensor's 64-bit type
            self.skeleton.append(tuple(shape))
            return BadArray(invalid(field, f"must be {IS_NUMERIC} in the range of its datatype"))
        values = np.frombuffer(buffer, dtype={"d": np.float64, "i": np.int64, "u": np.uint64}[of_type])
        if values.size != size:  # not rectangular: the exact check says where
            return self._bad(field, array)
        self.skeleton.append(tuple(shape))
        return values.reshape(shape)

    def _bad(self, field: str, array: Any) -> BadArray:
        value = array.as_list()
        self.skeleton.append(self._skeleton(value))
        return BadArray(exact_error(field, value))

    def settle(self, body: bytes, result: Any, arrays: Iterator[tuple[dict[str, Any], str, str]]) -> Any:
        """Proves the numeric arrays rectangular: a first row's shape and the count of numbers
        do not (``[[1, 2], [3], [4, 5, 6]]``), the body's skeleton does."""
        if self.refused:  # a 413 stands: the body is not read again
            return result
        if self.exact:
            shapes = [part for part in self.skeleton if isinstance(part, tuple)]
            if all(len(shape) <= 1 for shape in shapes):
                # Flat arrays whose every element is a number: no '[' beyond the expected ones.
                expected = sum(part.count(b"[") if isinstance(part, bytes) else 1 for part in self.skeleton)
                if body.count(b"[") == expected:
                    return result
            elif body.translate(None, _NOT_STRUCTURAL) == b"".join(
                part if isinstance(part, bytes) else _rectangle(part) for part in self.skeleton
            ):
                return result
        # Rare: a string with '[', ']' or ',' in it, or an array that is not rectangular.
        data = slow_document(body)
        for holder, key, field in list(arrays):
            problem = first_problem(_lookup(data, field))
            if problem is not None:
                holder[key] = BadArray(invalid(field, problem))
        return result


def _rectangle(shape: tuple[int, ...]) -> bytes:
    """The skeleton of a rectangular array of numbers of ``shape``."""
    inner = b"[" + b"," * max(shape[-1] - 1, 0) + b"]"
    for size in reversed(shape[:-1]):
        inner = b"[" + b",".join([inner] * size) + b"]"
    return inner


def _lookup(data: Any, field: str) -> Any:
    if field.startswith("inputs["):
        index = int(field[len("inputs[") : field.index("]")])
        return data["inputs"][index]["data"]
    return data[field]


def first_problem(value: Any) -> str | None:
    """Why a nested list is not a rectangular array of numbers, naming the first bad index
    in row-major order; None when it is one."""
    shape: list[int] = []
    node = value
    while isinstance(node, list):
        if len(shape) == MAX_AXES:
            return f"must be {IS_NUMERIC} (nested deeper than numpy's limit of 64 axes)"
        shape.append(len(node))
        if not node:
            break
        node = node[0]
    return _walk(value, shape, [])


def _walk(node: Any, shape: list[int], index: list[int]) -> str | None:
    depth = len(index)
    if depth == len(shape):
        if isinstance(node, bool) or not isinstance(node, int | float):
            if isinstance(node, list):
                return f"must be {IS_NUMERIC} (ragged: a list at index {index}, where the first sample has a number)"
            return f"must be {IS_NUMERIC}; got {_describe(node)} at index {index}"
        return None
    if not isinstance(node, list):
        what = "a number" if isinstance(node, int | float) and not isinstance(node, bool) else _describe(node)
        return f"must be {IS_NUMERIC} (ragged: {what} at index {index}, where the first sample has a list)"
    if len(node) != shape[depth]:
        return (
            f"must be {IS_NUMERIC} (ragged: the sublist at index {index} has {len(node)} elements, "
            f"the first at its depth has {shape[depth]})"
        )
    for position, item in enumerate(node):
        problem = _walk(item, shape, [*index, position])
        if problem is not None:
            return problem
    return None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def exact_error(field: str, value: Any) -> ServiceError:
    problem = first_problem(value)
    return invalid(field, problem or f"must be {IS_NUMERIC}")


def slow_document(body: bytes) -> Any:
    """The body as plain values: orjson, and its error; a body that is JSON but for
    NaN/Infinity literals, as the standard library reads it (the non-finite values are then
    named with their index by the finiteness checks)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    constants: list[str] = []

    def constant(name: str) -> float:
        constants.append(name)
        return float(name)

    if not body.startswith(BOM):
        try:
            data = json.loads(body, parse_constant=constant)
        except (ValueError, RecursionError):
            pass
        else:
            if constants:
                return data
    raise malformed(f"the body is not valid JSON: {error}") from None


def slow_infer_header(header: bytes) -> Any:
    try:
        data = slow_document(header)
    except ServiceError as exc:
        raise malformed(exc.detail.replace("the body", "the inference header")) from None
    return data


NUMBER_TEXT = b"0123456789.-+eE[],"


def list_problem(value: list[Any]) -> str | None:
    """What ``np.asarray`` would take for a number but JSON does not: a bool, null, a
    numeric string (numpy reads true as 1, null as NaN, "0.5" as 0.5). orjson writes numbers
    and lists in ``NUMBER_TEXT`` only."""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: far beyond numpy's axes
        return first_problem(value)
    return first_problem(value) if text.translate(None, NUMBER_TEXT) else None


def from_list(field: str, value: list[Any], dtype: type[np.generic] = np.float64) -> np.ndarray:
    """A nested list as an array, with the checks of the simdjson path; values beyond the
    dtype's range become inf (the finiteness checks name them)."""
    try:
        with np.errstate(over="ignore"):
            array = np.asarray(value, dtype=dtype)
    except (ValueError, TypeError, OverflowError):  # ragged, too deep, an object among the numbers
        raise exact_error(field, value) from None
    problem = list_problem(value)
    if problem is not None:
        raise invalid(field, problem)
    return array
