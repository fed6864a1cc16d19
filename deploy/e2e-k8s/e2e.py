#!/usr/bin/env python3
"""Helpers of deploy/e2e-k8s.sh (standard library only).

  e2e.py dns HOSTS DNSMASQ_PIDFILE        cluster DNS records from the API
  e2e.py photos URL DIR                   classify every photo, 3-item answers
  e2e.py load URL DIR TAG OUT [options]   uploads at a rate, one JSON per request
  e2e.py summary OUT...                   totals and failures of load runs
  e2e.py spread TAG PODS.json < LOGS      requests per ml pod, from gateway logs
  e2e.py share TAG PODS.json NEW FROM TO < LOGS
                                          share of the new pods in a time window
  e2e.py watch-ready OUT N                when each pod started and got Ready

The API is reached at $K8S_API with the bearer token in $K8S_TOKEN
(self-signed certificate on loopback: not verified).
"""
import collections
import glob
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

NS = "imgclass"


# ---- the API -----------------------------------------------------------------
def api_get(path):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(os.environ["K8S_API"] + path,
                                 headers={"Authorization": "Bearer " + os.environ["K8S_TOKEN"]})
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        return json.loads(r.read())


def dns(hosts, pidfile, domain="cluster.local", every=0.25):
    """Stands in for CoreDNS's kubernetes plugin on a bare cluster: writes a
    hosts file for dnsmasq with <svc>.<ns>.svc.<domain> -> the ClusterIP, or for
    a headless Service the addresses of its Ready endpoints (what CoreDNS
    answers), and makes dnsmasq re-read it (SIGHUP) whenever it changes."""
    current = None
    while True:
        try:
            services = api_get("/api/v1/services")["items"]
            endpoints = {(e["metadata"]["namespace"], e["metadata"]["name"]): e
                         for e in api_get("/api/v1/endpoints")["items"]}
        except (OSError, ValueError, KeyError) as e:
            print(f"cluster-dns: API: {e}", file=sys.stderr)
            time.sleep(1)
            continue
        lines = []
        for s in services:
            meta, spec = s["metadata"], s["spec"]
            name = f"{meta['name']}.{meta['namespace']}.svc.{domain}"
            if spec.get("clusterIP") not in (None, "", "None"):
                lines.append(f"{spec['clusterIP']} {name}")
                continue
            ep = endpoints.get((meta["namespace"], meta["name"]), {})
            ips = sorted({a["ip"] for sub in ep.get("subsets") or [] for a in sub.get("addresses") or []})
            lines += [f"{ip} {name}" for ip in ips]
        text = "\n".join(sorted(lines)) + "\n"
        if text != current:
            tmp = hosts + ".new"
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, hosts)
            with open(pidfile) as f:
                os.kill(int(f.read().split()[0]), signal.SIGHUP)
            current = text
        time.sleep(every)


# ---- uploads ---------------------------------------------------------------------
def photo_files(folder):
    return sorted(glob.glob(os.path.join(folder, "*.jpg")) + glob.glob(os.path.join(folder, "*.png")))


def multipart(path):
    boundary = "imgclass-e2e-k8s-3f9a1c"
    name = os.path.basename(path)
    with open(path, "rb") as f:
        data = f.read()
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return name, body, f"multipart/form-data; boundary={boundary}"


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def classify(url, upload, request_id, timeout=60):
    """(status, predictions or error text); status 0 when no HTTP answer."""
    name, body, ctype = upload
    req = urllib.request.Request(url + "/classify", data=body,
                                 headers={"Content-Type": ctype, "X-Request-Id": request_id})
    try:
        with OPENER.open(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200].decode(errors="replace")
    except (OSError, ValueError) as e:
        return 0, repr(e)[:200]


def photos(url, folder):
    bad = 0
    files = photo_files(folder)
    for path in files:
        status, preds = classify(url, multipart(path), "photo-" + os.path.basename(path))
        ok = (status == 200 and isinstance(preds, list) and len(preds) == 3
              and all({"label", "probability", "index"} <= set(p) for p in preds))
        bad += not ok
        shown = "; ".join(f"{p['label']} {p['probability']:.3f}" for p in preds) if ok else preds
        print(f"  {os.path.basename(path):24} {status} {shown}")
    print(f"  {len(files)} photos, {bad} without a 3-item answer")
    return 1 if bad or not files else 0


def load(url, folder, tag, out, rate=0.0, concurrency=16, duration=0.0, until=None, count=0):
    """Uploads from `concurrency` threads, at most `rate`/s overall (0: as fast
    as answered), for `duration` s, `count` requests, or until the file
    `until` exists. One JSON line per request in `out`."""
    uploads = [multipart(p) for p in photo_files(folder)]
    lock, state, rows = threading.Lock(), {"next": 0}, []
    t0 = time.time()

    def more(i):
        if count and i >= count:
            return False
        if duration and time.time() - t0 >= duration:
            return False
        if until and os.path.exists(until):
            return False
        return True

    def worker():
        while True:
            with lock:
                i = state["next"]
                if not more(i):
                    return
                state["next"] += 1
            if rate:
                delay = t0 + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            start = time.time()
            status, answer = classify(url, uploads[i % len(uploads)], f"{tag}-{i}")
            row = {"id": f"{tag}-{i}", "t": round(start, 3), "s": round(time.time() - start, 4), "status": status}
            if status != 200:
                row["error"] = answer if isinstance(answer, str) else json.dumps(answer)[:200]
            with lock:
                rows.append(row)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows.sort(key=lambda r: r["t"])
    with open(out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    elapsed = time.time() - t0
    lat = sorted(r["s"] for r in rows) or [0]
    codes = collections.Counter(str(r["status"]) for r in rows)
    print(f"  {tag}: {len(rows)} requests in {elapsed:.1f} s ({len(rows) / elapsed:.1f}/s), status {dict(codes)}, "
          f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, p99 {lat[max(0, int(len(lat) * 0.99) - 1)] * 1000:.0f} ms")
    for r in rows:
        if r["status"] != 200:
            print(f"    failed: {r}")
    return 0


def summary(*outs):
    total = failed = 0
    for out in outs:
        for line in open(out):
            r = json.loads(line)
            total += 1
            failed += r["status"] != 200
    print(json.dumps({"requests": total, "failures": failed}))


# ---- the gateways' access logs --------------------------------------------------
def log_lines(tag):
    """(time, answering pod address) of every request of a run in the gateway
    logs on stdin (`kubectl logs` of the web pods: JSON lines)."""
    for line in sys.stdin:
        brace = line.find("{")
        if brace < 0:
            continue
        try:
            rec = json.loads(line[brace:])
        except ValueError:
            continue
        if not str(rec.get("request_id", "")).startswith(tag + "-") or rec.get("uri", "").split("?")[0] != "/classify":
            continue
        tried = [a.strip() for a in rec.get("upstream", "").split(",") if a.strip()]
        if not tried:
            continue
        when = datetime.fromisoformat(rec["time"]).timestamp()
        yield when, tried[-1].rsplit(":", 1)[0], rec


def pod_names(pods_json):
    pods = json.load(open(pods_json))["items"]
    return {p["status"].get("podIP"): p["metadata"]["name"] for p in pods if p["status"].get("podIP")}


def spread(tag, pods_json):
    """Requests per ml pod (by the address that answered) as a JSON object;
    every current ml pod is listed, with 0 if it answered nothing."""
    names = pod_names(pods_json)
    counts = collections.Counter({name: 0 for name in names.values()})
    retried = 0
    for _, addr, rec in log_lines(tag):
        counts[names.get(addr, addr)] += 1
        retried += "," in rec.get("upstream", "")
    values = list(counts.values())
    ratio = max(values) / min(values) if values and min(values) else None
    print(json.dumps({"per_pod": dict(sorted(counts.items())), "max_over_min": ratio, "retried": retried}))


def share(tag, pods_json, new, start, end):
    """Share of the requests answered by the pods in `new` (comma-separated
    names) between the times start and end, and each pod's count."""
    names = pod_names(pods_json)
    new = set(new.split(","))
    counts = collections.Counter({name: 0 for name in names.values()})
    first = {}
    for when, addr, _ in log_lines(tag):
        name = names.get(addr, addr)
        first.setdefault(name, when)
        first[name] = min(first[name], when)
        if float(start) <= when < float(end):
            counts[name] += 1
    total = sum(counts.values())
    new_share = sum(counts[n] for n in new) / total if total else 0.0
    print(json.dumps({"per_pod": dict(sorted(counts.items())), "new_share": round(new_share, 3),
                      "first_request": {n: first.get(n) for n in sorted(new)}, "window_requests": total}))


# ---- pods ----------------------------------------------------------------------
def ts(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def watch_ready(out, expected, timeout=180):
    """Polls the namespace's pods every 0.2 s until `expected` pods are Ready;
    writes, per pod, when this script first saw its container running and
    Ready (wall clock, 0.2 s resolution) to `out` as JSON."""
    seen = {}
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = time.time()
        try:
            pods = api_get(f"/api/v1/namespaces/{NS}/pods")["items"]
        except (OSError, ValueError) as e:
            print(f"watch-ready: {e}", file=sys.stderr)
            time.sleep(0.5)
            continue
        for p in pods:
            name = p["metadata"]["name"]
            rec = seen.setdefault(name, {"component": p["metadata"]["labels"].get("app.kubernetes.io/component")})
            for c in p["status"].get("containerStatuses") or []:
                if "running" in c.get("state", {}):
                    rec.setdefault("running_seen", now)
                    rec["started_at"] = ts(c["state"]["running"]["startedAt"])
            for cond in p["status"].get("conditions") or []:
                if cond["type"] == "Ready" and cond["status"] == "True":
                    rec.setdefault("ready_seen", now)
        ready = [n for n, r in seen.items() if "ready_seen" in r]
        if len(ready) >= expected:
            break
        time.sleep(0.2)
    with open(out, "w") as f:
        json.dump(seen, f)
    ready = sum("ready_seen" in r for r in seen.values())
    return 0 if ready >= expected else 1


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "dns":
        dns(*args)
    elif cmd == "photos":
        return photos(*args)
    elif cmd == "load":
        url, folder, tag, out = args[:4]
        opts = dict(a.split("=", 1) for a in args[4:])
        return load(url, folder, tag, out, rate=float(opts.get("rate", 0)),
                    concurrency=int(opts.get("concurrency", 16)), duration=float(opts.get("duration", 0)),
                    until=opts.get("until"), count=int(opts.get("count", 0)))
    elif cmd == "summary":
        summary(*args)
    elif cmd == "spread":
        spread(*args)
    elif cmd == "share":
        share(*args)
    elif cmd == "watch-ready":
        return watch_ready(args[0], int(args[1]))
    else:
        sys.exit(f"unknown command {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
