#!/usr/bin/env python3
"""Drives an imgclass server with Triton's own HTTP client (tritonclient[http],
pinned in requirements.txt), with the client's DEFAULT options (binary tensor
data in and out) as well as the JSON ones.

Prints one JSON object per line:
    {"check": "<name>", "ok": true|false, "detail": "...", "seconds": 0.012}
and last a summary line {"summary": {"passed": P, "failed": F, "checks": [...]}}.
Exit status 0 when every check passed, 1 otherwise, 2 on bad arguments.

Input and output names are read from the model's metadata (the first BYTES
input, the first FP32 input, the first output), so the checks follow the
server rather than hard-coding its names.

Usage:
    python client_checks.py --url 127.0.0.1:18080 --model efficientnet-lite0 \
        --image coffee.png --expect 967,968 [--image2 chelsea.png] \
        [--reference-top1 905] [--api-key KEY] [--other-model NAME] [--only a,b] [--skip-repository]
"""

import argparse
import base64
import json
import sys
import time
import traceback

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

RESULTS = []


def emit(check, ok, detail="", seconds=0.0):
    line = {"check": check, "ok": bool(ok), "detail": str(detail)[:2000], "seconds": round(seconds, 4)}
    RESULTS.append(line)
    print(json.dumps(line), flush=True)


class CheckFailed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


def status_of(exc):
    """The HTTP status of a client exception, as an int (0 if none)."""
    try:
        return int(exc.status() or 0)
    except (TypeError, ValueError):
        return 0


def expect_http_error(fn, statuses, what):
    """Runs fn, which must raise an InferenceServerException whose status is
    in `statuses` and whose message came from a JSON {"error": ...} body."""
    try:
        fn()
    except InferenceServerException as e:
        s = status_of(e)
        msg = e.message() or ""
        expect(s in statuses, f"{what}: status {s}, wanted one of {sorted(statuses)}: {msg}")
        # tritonclient reads the body as JSON {"error": ...}; when it cannot,
        # its message starts with this text.
        expect("exception occurred in the client while decoding" not in msg,
               f"{what}: error body is not the protocol's JSON: {msg}")
        expect(msg.strip() != "", f"{what}: empty error message")
        return s, msg
    raise CheckFailed(f"{what}: no error raised")


class Checks:
    def __init__(self, args):
        self.args = args
        self.client = httpclient.InferenceServerClient(
            url=args.url, connection_timeout=10.0, network_timeout=60.0
        )
        with open(args.image, "rb") as f:
            self.image = f.read()
        with open(args.image2 or args.image, "rb") as f:
            self.image2 = f.read()
        self.expect_classes = {int(c) for c in args.expect.split(",")} if args.expect else set()
        self.meta = None

    # -- helpers ---------------------------------------------------------
    @property
    def headers(self):
        """A fresh dict per call: tritonclient's infer() writes
        Inference-Header-Content-Length into the dict it is given, and a
        reused dict would send that stale length with the next request."""
        return {"Authorization": f"Bearer {self.args.api_key}"} if self.args.api_key else None

    def names(self):
        if self.meta is None:
            self.meta = self.client.get_model_metadata(self.args.model, headers=self.headers)
        bytes_in = next((i for i in self.meta["inputs"] if i["datatype"] == "BYTES"), None)
        fp32_in = next((i for i in self.meta["inputs"] if i["datatype"] == "FP32"), None)
        out = self.meta["outputs"][0]
        return bytes_in, fp32_in, out

    def image_input(self, images, binary=True, b64=False):
        bytes_in, _, _ = self.names()
        expect(bytes_in is not None, "model metadata lists no BYTES input")
        if b64:
            arr = np.array([[base64.b64encode(i).decode("ascii")] for i in images], dtype=np.object_)
        else:
            arr = np.array([[i] for i in images], dtype=np.object_)
        inp = httpclient.InferInput(bytes_in["name"], [len(images), 1], "BYTES")
        inp.set_data_from_numpy(arr, binary_data=binary)
        return inp

    def reference_tensor(self):
        """DESIGN.md's reference input: x[c,h,w] = (((h*W+w)*(c+1)) mod 255 - 127)/128."""
        _, fp32_in, _ = self.names()
        expect(fp32_in is not None, "model metadata lists no FP32 input")
        c, h, w = [int(d) for d in fp32_in["shape"][1:]]
        hh, ww = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        planes = [((((hh * w + ww) * (ci + 1)) % 255) - 127) / 128.0 for ci in range(c)]
        return fp32_in["name"], np.stack(planes)[None].astype(np.float32)

    def infer(self, inputs, outputs=None, **kw):
        return self.client.infer(self.args.model, inputs, outputs=outputs, headers=self.headers, **kw)

    def probabilities(self, result, rows):
        _, _, out = self.names()
        p = result.as_numpy(out["name"])
        expect(p is not None, f"no output {out['name']!r} in the response")
        expect(p.dtype == np.float32, f"output dtype {p.dtype}")
        expect(p.ndim == 2 and p.shape[0] == rows, f"output shape {p.shape}, wanted [{rows}, classes]")
        sums = p.sum(axis=1)
        expect(np.all(np.abs(sums - 1.0) < 1e-3), f"rows sum to {sums}")
        return p

    def top_ok(self, row):
        top = int(np.argmax(row))
        if self.expect_classes:
            expect(top in self.expect_classes, f"top-1 {top} not in {sorted(self.expect_classes)}")
        return top

    def was_binary(self, result):
        _, _, out = self.names()
        o = result.get_output(out["name"])
        return "binary_data_size" in (o.get("parameters") or {}), o

    # -- checks ----------------------------------------------------------
    def check_live(self):
        expect(self.client.is_server_live(headers=self.headers), "not live")

    def check_ready(self):
        expect(self.client.is_server_ready(headers=self.headers), "not ready")

    def check_server_metadata(self):
        m = self.client.get_server_metadata(headers=self.headers)
        expect(m.get("name") and m.get("version"), f"name/version missing: {m}")
        ext = set(m.get("extensions", []))
        want = {"binary_tensor_data", "classification", "model_repository", "statistics",
                "model_configuration"}
        expect(want <= ext, f"extensions {sorted(ext)} lack {sorted(want - ext)}")
        return f"extensions={sorted(ext)}"

    def check_model_ready(self):
        expect(self.client.is_model_ready(self.args.model, headers=self.headers), "model not ready")

    def check_model_metadata(self):
        self.meta = None
        bytes_in, fp32_in, out = self.names()
        expect(self.meta["name"] == self.args.model, f"name {self.meta['name']!r}")
        expect(bytes_in is not None and fp32_in is not None, f"inputs {self.meta['inputs']}")
        expect(out["datatype"] == "FP32", f"output {out}")
        return f"inputs={[i['name'] for i in self.meta['inputs']]} output={out['name']}"

    def check_model_config(self):
        c = self.client.get_model_config(self.args.model, headers=self.headers)
        expect(c.get("name") == self.args.model, f"name {c.get('name')!r}")
        expect(c.get("platform") or c.get("backend"), "no platform/backend")
        expect(isinstance(c.get("max_batch_size"), int) and c["max_batch_size"] > 0,
               f"max_batch_size {c.get('max_batch_size')!r}")
        meta_inputs = {i["name"] for i in self.names()[0:2] if i}
        cfg_inputs = {i["name"] for i in c.get("input", [])}
        expect(cfg_inputs and cfg_inputs <= {i["name"] for i in self.meta["inputs"]},
               f"config inputs {cfg_inputs} not all in metadata")
        expect(meta_inputs <= cfg_inputs, f"metadata inputs {meta_inputs} not in config {cfg_inputs}")
        for t in c["input"] + c.get("output", []):
            expect(str(t.get("data_type", "")).startswith("TYPE_"), f"data_type of {t}")
            expect(isinstance(t.get("dims"), list) and all(isinstance(d, int) for d in t["dims"]),
                   f"dims of {t}")
        db = c.get("dynamic_batching")
        expect(isinstance(db, dict) and isinstance(db.get("max_queue_delay_microseconds"), int),
               f"dynamic_batching {db!r}")
        ig = c.get("instance_group") or []
        expect(ig and ig[0].get("count", 0) >= 1 and str(ig[0].get("kind", "")).startswith("KIND_"),
               f"instance_group {ig!r}")
        return (f"max_batch_size={c['max_batch_size']} inputs={sorted(cfg_inputs)} "
                f"delay_us={db['max_queue_delay_microseconds']} instances={ig[0]['count']}")

    def check_bytes_binary_in_binary_out(self):
        _, _, out = self.names()
        r = self.infer([self.image_input([self.image])], [httpclient.InferRequestedOutput(out["name"])])
        binary, o = self.was_binary(r)
        expect(binary, f"output not binary: {o}")
        return f"top1={self.top_ok(self.probabilities(r, 1)[0])}"

    def check_bytes_binary_in_json_out(self):
        _, _, out = self.names()
        r = self.infer([self.image_input([self.image])],
                       [httpclient.InferRequestedOutput(out["name"], binary_data=False)])
        binary, o = self.was_binary(r)
        expect(not binary and "data" in o, f"output not JSON: {list(o)}")
        return f"top1={self.top_ok(self.probabilities(r, 1)[0])}"

    def check_bytes_base64_json(self):
        _, _, out = self.names()
        r = self.infer([self.image_input([self.image], binary=False, b64=True)],
                       [httpclient.InferRequestedOutput(out["name"], binary_data=False)])
        return f"top1={self.top_ok(self.probabilities(r, 1)[0])}"

    def check_bytes_batch_binary(self):
        r = self.infer([self.image_input([self.image, self.image2])])
        p = self.probabilities(r, 2)
        self.top_ok(p[0])
        if self.args.image2 is None:
            expect(np.allclose(p[0], p[1], atol=1e-5), "the same image twice scored differently")
        return f"top1={[int(np.argmax(x)) for x in p]}"

    def fp32_infer(self, binary):
        name, x = self.reference_tensor()
        inp = httpclient.InferInput(name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        _, _, out = self.names()
        r = self.infer([inp], [httpclient.InferRequestedOutput(out["name"], binary_data=binary)])
        p = self.probabilities(r, 1)[0]
        top = int(np.argmax(p))
        if self.args.reference_top1 is not None:
            expect(top == self.args.reference_top1, f"top-1 {top}, wanted {self.args.reference_top1}")
        return p, top

    def check_fp32_binary(self):
        p, top = self.fp32_infer(True)
        self.fp32_binary = p
        return f"top1={top} p={p[top]:.4f}"

    def check_fp32_json(self):
        p, top = self.fp32_infer(False)
        ref = getattr(self, "fp32_binary", None)
        if ref is not None:
            expect(np.allclose(p, ref, atol=1e-5), "JSON and binary FP32 disagree")
        return f"top1={top} p={p[top]:.4f}"

    def check_outputs_not_named(self):
        # outputs=None: the client sets parameters.binary_data_output = true
        r = self.infer([self.image_input([self.image])])
        binary, o = self.was_binary(r)
        expect(binary, f"binary_data_output ignored: {o}")
        return f"top1={self.top_ok(self.probabilities(r, 1)[0])}"

    def classification(self, binary):
        _, _, out = self.names()
        r = self.infer([self.image_input([self.image])],
                       [httpclient.InferRequestedOutput(out["name"], binary_data=binary, class_count=3)])
        o = r.get_output(out["name"])
        expect(o["datatype"] == "BYTES", f"datatype {o['datatype']}")
        c = r.as_numpy(out["name"])
        expect(c.shape == (1, 3), f"shape {c.shape}")
        rows = []
        for item in c[0]:
            s = item.decode() if isinstance(item, bytes) else str(item)
            score, index, label = s.split(":", 2)
            rows.append((float(score), int(index), label))
        expect(all(label for _, _, label in rows), f"labels missing: {rows}")
        expect(rows == sorted(rows, key=lambda t: -t[0]), f"not highest first: {rows}")
        if self.expect_classes:
            expect(rows[0][1] in self.expect_classes, f"top {rows[0]}")
        return f"{[f'{s:.3f}:{i}:{l}' for s, i, l in rows]}"

    def check_classification_binary(self):
        return self.classification(True)

    def check_classification_json(self):
        return self.classification(False)

    def check_request_id(self):
        r = self.infer([self.image_input([self.image])], request_id="oip-42")
        got = r.get_response().get("id")
        expect(got == "oip-42", f"id {got!r}")

    def check_unused_parameters(self):
        r = self.infer([self.image_input([self.image])], priority=1, timeout=10_000_000,
                       parameters={"custom_param": "ignored", "another": 3})
        self.probabilities(r, 1)

    def stats(self):
        s = self.client.get_inference_statistics(self.args.model, headers=self.headers)
        mine = [m for m in s.get("model_stats", []) if m.get("name") == self.args.model]
        expect(mine, f"no stats for the model: {s}")
        return mine[0]

    def check_statistics_move(self):
        before = self.stats()
        for key in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                    "cache_hit", "cache_miss"):
            d = before["inference_stats"].get(key)
            expect(isinstance(d, dict) and {"count", "ns"} <= set(d), f"inference_stats.{key} = {d!r}")
        expect(isinstance(before.get("version"), str), "version missing (perf_analyzer needs it)")
        self.infer([self.image_input([self.image, self.image2])])
        after = self.stats()
        d_inf = after["inference_count"] - before["inference_count"]
        d_exe = after["execution_count"] - before["execution_count"]
        d_ok = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
        d_ns = after["inference_stats"]["compute_infer"]["ns"] - before["inference_stats"]["compute_infer"]["ns"]
        expect(d_inf == 2, f"inference_count moved by {d_inf}, wanted 2")
        expect(d_exe >= 1, f"execution_count moved by {d_exe}")
        expect(d_ok == 1, f"success.count moved by {d_ok}, wanted 1")
        expect(d_ns > 0, f"compute_infer.ns moved by {d_ns}")
        expect(after["last_inference"] >= before["last_inference"] and after["last_inference"] > 0,
               "last_inference did not move")
        every = self.client.get_inference_statistics(headers=self.headers)
        expect(any(m.get("name") == self.args.model for m in every.get("model_stats", [])),
               "GET /v2/models/stats lacks the model")
        return f"inference_count+{d_inf} execution_count+{d_exe} compute_infer+{d_ns}ns"

    def index_state(self):
        idx = self.client.get_model_repository_index(headers=self.headers)
        expect(isinstance(idx, list), f"index is not a list: {idx!r}")
        mine = [m for m in idx if m.get("name") == self.args.model]
        expect(mine, f"model not in index {idx}")
        return mine[0], idx

    def check_repository_index(self):
        m, idx = self.index_state()
        expect(m.get("state") == "READY", f"state {m}")
        return f"{[(x.get('name'), x.get('state')) for x in idx]}"

    def check_repository_unload_load(self):
        if self.args.api_key:
            expect_http_error(lambda: self.client.unload_model(self.args.model), {401},
                              "unload without the API key")
        self.client.unload_model(self.args.model, headers=self.headers)
        expect(not self.client.is_model_ready(self.args.model, headers=self.headers),
               "still ready after unload")
        m, _ = self.index_state()
        expect(m.get("state") == "UNAVAILABLE", f"state after unload {m}")
        s, _ = expect_http_error(lambda: self.infer([self.image_input([self.image])]),
                                 set(range(400, 500)) | {503}, "infer on an unloaded model")
        self.client.load_model(self.args.model, headers=self.headers)
        deadline = time.monotonic() + 120
        while not self.client.is_model_ready(self.args.model, headers=self.headers):
            expect(time.monotonic() < deadline, "not ready 120 s after load")
            time.sleep(0.2)
        m, _ = self.index_state()
        expect(m.get("state") == "READY", f"state after load {m}")
        r = self.infer([self.image_input([self.image])])
        return f"unloaded infer -> {s}; reloaded top1={self.top_ok(self.probabilities(r, 1)[0])}"

    def check_repository_other_model(self):
        """A second model of the model home: listed but not served until
        loaded, then served beside the first, then unloaded again."""
        other = self.args.other_model
        idx = self.client.get_model_repository_index(headers=self.headers)
        entry = [m for m in idx if m.get("name") == other]
        expect(entry and entry[0].get("state") != "READY", f"{other} in the index before load: {entry}")
        expect(entry[0].get("reason"), f"no reason for {other} not being ready: {entry}")
        expect(not self.client.is_model_ready(other, headers=self.headers), f"{other} ready before load")
        s, _ = expect_http_error(
            lambda: self.client.infer(other, [self.image_input([self.image])], headers=self.headers),
            {404}, f"infer on {other} before load")
        self.client.load_model(other, headers=self.headers)
        expect(self.client.is_model_ready(other, headers=self.headers), f"{other} not ready after load")
        r = self.client.infer(other, [self.image_input([self.image])], headers=self.headers,
                              outputs=[httpclient.InferRequestedOutput(self.names()[2]["name"], class_count=1)])
        top = r.as_numpy(self.names()[2]["name"])[0][0]
        top = top.decode() if isinstance(top, bytes) else str(top)
        expect(self.client.is_model_ready(self.args.model, headers=self.headers),
               "loading another model disturbed the first")
        stats = self.client.get_inference_statistics(headers=self.headers)
        names = {m.get("name") for m in stats.get("model_stats", [])}
        expect({other, self.args.model} <= names, f"stats of every served model: {names}")
        self.client.unload_model(other, headers=self.headers)
        expect(not self.client.is_model_ready(other, headers=self.headers), f"{other} ready after unload")
        return f"before load infer -> {s}; loaded top1={top!r}; unloaded"

    def check_unknown_model(self):
        nope = "no-such-model"
        codes = []
        for what, fn in [
            ("metadata", lambda: self.client.get_model_metadata(nope, headers=self.headers)),
            ("config", lambda: self.client.get_model_config(nope, headers=self.headers)),
            ("stats", lambda: self.client.get_inference_statistics(nope, headers=self.headers)),
            ("infer", lambda: self.client.infer(nope, [self.image_input([self.image])], headers=self.headers)),
            ("load", lambda: self.client.load_model(nope, headers=self.headers)),
            ("unload", lambda: self.client.unload_model(nope, headers=self.headers)),
            ("version", lambda: self.client.get_model_metadata(self.args.model, model_version="7",
                                                               headers=self.headers)),
        ]:
            s, _ = expect_http_error(fn, {404}, f"{what} of an unknown model")
            codes.append(f"{what}={s}")
        expect(not self.client.is_model_ready(nope, headers=self.headers), "unknown model is ready")
        return " ".join(codes)

    def check_corrupt_image_binary(self):
        broken = self.image[: max(16, len(self.image) // 3)]
        s, msg = expect_http_error(lambda: self.infer([self.image_input([broken])]),
                                   set(range(400, 500)), "a truncated image")
        expect(self.client.is_server_live(headers=self.headers), "server not live after the bad image")
        r = self.infer([self.image_input([self.image])])
        self.probabilities(r, 1)
        return f"status={s} error={msg!r}"


ORDER = [
    "live", "ready", "server_metadata", "model_ready", "model_metadata", "model_config",
    "bytes_binary_in_binary_out", "bytes_binary_in_json_out", "bytes_base64_json",
    "bytes_batch_binary", "fp32_binary", "fp32_json", "outputs_not_named",
    "classification_binary", "classification_json", "request_id", "unused_parameters",
    "statistics_move", "repository_index", "unknown_model", "corrupt_image_binary",
    "repository_unload_load", "repository_other_model",
]
REPOSITORY = {"repository_index", "repository_unload_load", "repository_other_model"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="host:port of the server (no scheme)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True, help="an encoded photo (PNG/JPEG)")
    ap.add_argument("--image2", help="a second photo for the batch (default: --image again)")
    ap.add_argument("--expect", help="comma-separated class indices, one of which must be top-1 for --image")
    ap.add_argument("--reference-top1", type=int,
                    help="top-1 class of DESIGN.md's reference FP32 tensor (905 for efficientnet-lite0)")
    ap.add_argument("--api-key", help="sent as Authorization: Bearer on every call")
    ap.add_argument("--other-model",
                    help="a second model of the model home, not loaded at start (repository_other_model)")
    ap.add_argument("--only", help="comma-separated checks to run (default: all)")
    ap.add_argument("--skip-repository", action="store_true", help="skip index/load/unload")
    ap.add_argument("--list", action="store_true", help="print the check names and exit")
    args = ap.parse_args()
    if args.list:
        print("\n".join(ORDER))
        return 0
    chosen = ORDER
    if args.only:
        wanted = args.only.split(",")
        unknown = [w for w in wanted if w not in ORDER]
        if unknown:
            print(f"unknown checks: {unknown}; known: {ORDER}", file=sys.stderr)
            return 2
        chosen = [c for c in ORDER if c in wanted]
    if args.skip_repository:
        chosen = [c for c in chosen if c not in REPOSITORY]
    if not args.other_model:
        chosen = [c for c in chosen if c != "repository_other_model"]

    checks = Checks(args)
    for name in chosen:
        t0 = time.monotonic()
        try:
            detail = getattr(checks, f"check_{name}")()
            emit(name, True, detail or "", time.monotonic() - t0)
        except CheckFailed as e:
            emit(name, False, e, time.monotonic() - t0)
        except InferenceServerException as e:
            emit(name, False, f"HTTP {e.status()}: {e.message()}", time.monotonic() - t0)
        except Exception as e:  # a client-side failure is a failed check, not a crash
            emit(name, False, f"{type(e).__name__}: {e} | {traceback.format_exc(limit=2)}",
                 time.monotonic() - t0)
    passed = sum(r["ok"] for r in RESULTS)
    failed = len(RESULTS) - passed
    print(json.dumps({"summary": {"passed": passed, "failed": failed,
                                  "checks": [r["check"] for r in RESULTS]}}), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
