"""Bodies made and read by the real tritonclient (2.73.0, from the pinned venv)
for tests/tritonclient.rs, through the client's public
InferenceServerClient.generate_request_body / parse_response_body.

    python tritonclient_bodies.py requests   -> one JSON line per request case
    python tritonclient_bodies.py responses  <- JSON lines of encoded responses
                                             -> one JSON line per decoded response
"""

import base64
import json
import sys

import numpy as np
import tritonclient.http as http

C = http.InferenceServerClient


def values(arr):
    if arr.dtype == np.object_:
        return [base64.b64encode(x if isinstance(x, bytes) else str(x).encode()).decode() for x in arr.flatten()]
    if arr.dtype == np.float16:
        return [float(x) for x in arr.flatten()]
    return arr.flatten().tolist()


def inp(name, arr, datatype, binary=True):
    i = http.InferInput(name, list(arr.shape), datatype)
    i.set_data_from_numpy(arr, binary_data=binary)
    return i, {"name": name, "datatype": datatype, "shape": list(arr.shape), "values": values(arr)}


def requests():
    imgs = np.array([[b"\x89PNG\r\n\x1a\n\x00\xff"], [b"\xff\xd8\xff\xe0 jpeg"]], dtype=np.object_)
    b64 = np.array([[base64.b64encode(b"\x89PNG\x00").decode()]], dtype=np.object_)
    x = (np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4) - 20.5) / 7.0
    cases = []

    def case(name, inputs, expect_extra=None, **kw):
        body, header = C.generate_request_body([i for i, _ in inputs], **kw)
        cases.append({"case": name, "header": header, "body": base64.b64encode(body).decode(),
                      "inputs": [e for _, e in inputs], **(expect_extra or {})})

    case("default_bytes", [inp("image", imgs, "BYTES")], {"binary_data_output": True})
    case("bytes_base64_json", [inp("image", b64, "BYTES", binary=False)],
         {"binary_data_output": False, "classification": 3},
         outputs=[http.InferRequestedOutput("probabilities", binary_data=False, class_count=3)])
    case("fp32_binary", [inp("input", x, "FP32")], {"id": "req-7", "binary_data_output": False},
         outputs=[http.InferRequestedOutput("probabilities")], request_id="req-7", priority=1,
         timeout=100, parameters={"custom": 1})
    case("fp32_json", [inp("input", x, "FP32", binary=False)], {"binary_data_output": True})
    case("mixed", [
        inp("u8", np.array([[0, 7, 255]], dtype=np.uint8), "UINT8"),
        inp("i64", np.array([-5, 2**40], dtype=np.int64), "INT64", binary=False),
        inp("flag", np.array([True, False]), "BOOL"),
        inp("half", np.array([1.5, -2.0], dtype=np.float16), "FP16"),
        inp("strs", np.array([b"", b"abc"], dtype=np.object_), "BYTES"),
        inp("text", np.array(["héllo"], dtype=np.object_), "BYTES", binary=False),
    ], {"binary_data_output": True}, sequence_id=5, sequence_start=True)
    for c in cases:
        print(json.dumps(c))


def responses():
    for line in sys.stdin:
        r = json.loads(line)
        res = C.parse_response_body(base64.b64decode(r["body"]), header_length=r["header"])
        outs = {}
        for o in res.get_response()["outputs"]:
            arr = res.as_numpy(o["name"])
            outs[o["name"]] = {"datatype": o["datatype"], "shape": list(arr.shape), "values": values(arr),
                               "binary": "binary_data_size" in (o.get("parameters") or {})}
        print(json.dumps({"case": r["case"], "id": res.get_response().get("id"), "outputs": outs}), flush=True)


if __name__ == "__main__":
    {"requests": requests, "responses": responses}[sys.argv[1]]()
