// imgclass web page: upload and classify, recent results, live service stats.
// Plain browser JavaScript, no build step, no third-party code. Every URL is
// relative so the same folder works behind a gateway under any path prefix.
(() => {
  "use strict";

  const KEY_STORAGE = "imgclass.apiKey";
  const TOPK_STORAGE = "imgclass.topK";
  const MODEL_STORAGE = "imgclass.model";
  // Ask the server for the most classes the selector offers, show the
  // selected number: changing the selector re-renders results at once.
  const REQUEST_TOP_K = 10;
  const HISTORY_PAGE = 12;
  const STATS_EVERY_MS = 1000;
  const STATS_HIDDEN_EVERY_MS = 5000;
  const CHART_WINDOW_MS = 5 * 60 * 1000;
  const CHART_MIN_SPAN_MS = 60 * 1000;
  const MAX_BUSY_RETRIES = 3;
  // How long the page shows one replica's figures before asking again for
  // the deployment's: when none are served (404), and when the replicas'
  // Prometheus did not answer (502).
  const DEPLOYMENT_ABSENT_RETRY_MS = 60 * 1000;
  const DEPLOYMENT_FAILED_RETRY_MS = 5 * 1000;

  const $ = (id) => document.getElementById(id);

  // ---------- small helpers ----------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === "class") node.className = v;
        else if (k === "text") node.textContent = v;
        else if (k === "dataset") Object.assign(node.dataset, v);
        else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function readStore(key) {
    try { return window.localStorage.getItem(key); } catch { return null; }
  }
  function writeStore(key, value) {
    try {
      if (value === null || value === "") window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch { /* storage disabled: the value lasts for this page only */ }
  }

  let memoryKey = readStore(KEY_STORAGE) || "";
  const apiKey = () => memoryKey;
  const authHeaders = () => (apiKey() ? { Authorization: "Bearer " + apiKey() } : {});

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function fmtPercent(p) {
    const v = p * 100;
    if (!Number.isFinite(v)) return "—";
    if (v > 0 && v < 0.1) return "<0.1%";
    return v.toFixed(1) + "%";
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
    if (ms < 1) return ms.toFixed(2) + " ms";
    if (ms < 100) return ms.toFixed(1) + " ms";
    if (ms < 10000) return Math.round(ms) + " ms";
    return (ms / 1000).toFixed(1) + " s";
  }

  function fmtNumber(n, digits) {
    if (n === null || n === undefined || !Number.isFinite(n)) return "—";
    return n.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }

  function fmtRate(r) {
    if (!Number.isFinite(r)) return "—";
    if (r === 0) return "0";
    if (r < 10) return r.toFixed(2);
    if (r < 100) return r.toFixed(1);
    return Math.round(r).toString();
  }

  function fmtDuration(seconds) {
    if (!Number.isFinite(seconds)) return "—";
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${sec} s`;
    return `${sec} s`;
  }

  function fmtBytes(n) {
    if (!Number.isFinite(n)) return "—";
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / (1024 * 1024)).toFixed(1) + " MiB";
  }

  const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto", style: "short" });
  function fmtAgo(date) {
    const diff = (date.getTime() - Date.now()) / 1000;
    const abs = Math.abs(diff);
    if (abs < 45) return "just now";
    if (abs < 3600) return relative.format(Math.round(diff / 60), "minute");
    if (abs < 86400) return relative.format(Math.round(diff / 3600), "hour");
    if (abs < 7 * 86400) return relative.format(Math.round(diff / 86400), "day");
    return date.toLocaleDateString();
  }

  function headerMs(response, name) {
    const v = response.headers.get(name);
    if (v === null) return null;
    const n = parseFloat(v);
    return Number.isFinite(n) ? n : null;
  }

  // Reads an API error body: `{"error": "..."}` from our server, or
  // whatever a gateway sent (never shown as raw HTML).
  async function readError(response) {
    let text = "";
    try { text = await response.text(); } catch { /* body unreadable */ }
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === "string" && body.error) return body.error;
      if (body && body.error && typeof body.error.message === "string") return body.error.message;
    } catch { /* not JSON */ }
    const plain = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
    if (plain && plain.length <= 200) return plain;
    return response.statusText || "no details";
  }

  const ERROR_TITLES = {
    400: "The request was not accepted",
    401: "API key needed",
    403: "Not allowed",
    404: "Not found",
    408: "Request timed out",
    413: "File too large",
    415: "Unsupported file",
    422: "Unreadable image",
    429: "Too many requests",
    500: "Server error",
    502: "Gateway error",
    503: "Server busy",
    504: "Timed out on the server",
  };

  function errorTitle(status) {
    return ERROR_TITLES[status] || (status >= 500 ? "Server error" : "Request failed");
  }

  // ---------- API key settings ----------

  const settings = $("settings");
  const settingsToggle = $("settings-toggle");
  const keyInput = $("api-key");
  const keyNote = $("api-key-note");

  function openSettings(focus) {
    settings.hidden = false;
    settingsToggle.setAttribute("aria-expanded", "true");
    if (focus) keyInput.focus();
  }
  function closeSettings() {
    settings.hidden = true;
    settingsToggle.setAttribute("aria-expanded", "false");
  }
  function describeKey() {
    keyNote.textContent = apiKey()
      ? "A key is saved in this browser and sent with every request."
      : "No key saved: requests are sent without one.";
    settingsToggle.classList.toggle("has-key", Boolean(apiKey()));
  }

  keyInput.value = apiKey();
  describeKey();
  settingsToggle.addEventListener("click", () => {
    if (settings.hidden) openSettings(true); else closeSettings();
  });
  $("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    memoryKey = keyInput.value.trim();
    writeStore(KEY_STORAGE, memoryKey);
    describeKey();
    keyNote.textContent = memoryKey ? "Saved. Requests now send this key." : "Cleared: requests are sent without a key.";
    thumbUrls.clear();
    loadHistory(true);
  });
  $("api-key-clear").addEventListener("click", () => {
    keyInput.value = "";
    memoryKey = "";
    writeStore(KEY_STORAGE, null);
    describeKey();
    keyNote.textContent = "Forgotten: requests are sent without a key.";
    loadHistory(true);
  });
  $("api-key-show").addEventListener("click", (e) => {
    const show = keyInput.type === "password";
    keyInput.type = show ? "text" : "password";
    e.currentTarget.textContent = show ? "Hide" : "Show";
    e.currentTarget.setAttribute("aria-pressed", String(show));
  });
  settings.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { closeSettings(); settingsToggle.focus(); }
  });

  // ---------- model selector ----------

  // The served models come with every stats poll (`models`, the default
  // first); the selector shows when there is a choice, and the choice is
  // remembered. Uploads name it with `?model=`; until the first poll, or
  // when the remembered model is no longer served, the server's default
  // answers.
  const modelSelect = $("model");
  let wantedModel = readStore(MODEL_STORAGE) || "";

  function renderModels(models) {
    const names = (Array.isArray(models) ? models : [])
      .map((m) => m && m.name)
      .filter((n) => typeof n === "string" && n !== "");
    const shown = Array.from(modelSelect.options, (o) => o.value);
    if (names.join("\n") !== shown.join("\n")) {
      modelSelect.replaceChildren(...names.map((n, i) =>
        el("option", { value: n, text: i === 0 ? `${n} (default)` : n })));
    }
    if (names.includes(wantedModel)) modelSelect.value = wantedModel;
    $("model-control").hidden = names.length < 2;
  }

  modelSelect.addEventListener("change", () => {
    wantedModel = modelSelect.value;
    writeStore(MODEL_STORAGE, wantedModel);
  });

  // The model an upload asks for ("" = the server's default).
  const chosenModel = () => (modelSelect.options.length > 1 ? modelSelect.value : "");

  // ---------- top-k selector ----------

  const topKSelect = $("top-k");
  const storedK = parseInt(readStore(TOPK_STORAGE) || "", 10);
  if (storedK >= 1 && storedK <= 10) topKSelect.value = String(storedK);
  const topK = () => {
    const k = parseInt(topKSelect.value, 10);
    return k >= 1 && k <= 10 ? k : 3;
  };
  topKSelect.addEventListener("change", () => {
    writeStore(TOPK_STORAGE, topKSelect.value);
    for (const job of jobs) if (job.state === "done") renderBars(job.barsEl, job.predictions, topK());
  });

  // ---------- bars ----------

  function renderBars(list, predictions, k) {
    const rows = predictions.slice(0, k).map((p) => {
      const pct = Math.max(0, Math.min(1, Number(p.probability) || 0)) * 100;
      // Set through the CSSOM, which a strict Content-Security-Policy allows.
      const fill = el("span", { class: "bar-fill" });
      fill.style.width = `${Math.max(pct, 0.6).toFixed(2)}%`;
      return el("li", { class: "bar-row" },
        el("span", { class: "bar-label" },
          el("span", { class: "bar-name", text: p.label }),
          Number.isInteger(p.index) ? el("span", { class: "index", text: "#" + p.index, "aria-hidden": "true" }) : null),
        el("span", { class: "bar-value", text: fmtPercent(p.probability) }),
        el("span", { class: "bar-track", "aria-hidden": "true" }, fill));
    });
    list.replaceChildren(...rows);
  }

  // ---------- the upload queue ----------

  const results = $("results");
  const queueStatus = $("queue-status");
  const clearButton = $("clear-results");
  const announcer = $("announcer");
  const jobs = [];
  let nextJobId = 1;
  let pumping = false;

  function updateQueueStatus() {
    const waiting = jobs.filter((j) => j.state === "queued").length;
    const working = jobs.some((j) => j.state === "working");
    const done = jobs.filter((j) => j.state === "done").length;
    const failed = jobs.filter((j) => j.state === "error").length;
    let text;
    if (!jobs.length) text = "No images yet.";
    else if (working || waiting) {
      text = `Classifying… ${waiting ? `${waiting} waiting` : "last one"}`;
    } else {
      text = `${done} classified` + (failed ? `, ${failed} failed` : "") + ".";
    }
    queueStatus.textContent = text;
    clearButton.hidden = !jobs.some((j) => j.state === "done" || j.state === "error");
  }

  function setState(job, state, badge) {
    job.state = state;
    job.card.dataset.state = state;
    job.badge.textContent = badge;
    job.card.setAttribute("aria-busy", String(state === "working" || state === "queued"));
  }

  function makeCard(job) {
    const name = job.file.name || "pasted image";
    const img = el("img", { alt: `Preview of ${name}` });
    const thumb = el("div", { class: "thumb" }, img,
      el("div", { class: "overlay" }, el("div", { class: "spinner", "aria-hidden": "true" })));
    job.previewUrl = URL.createObjectURL(job.file);
    img.addEventListener("error", () => {
      img.remove();
      thumb.prepend(el("span", { class: "no-preview", text: "No preview: the browser cannot display this file" }));
    }, { once: true });
    img.src = job.previewUrl;
    job.badge = el("span", { class: "badge", text: "Queued" });
    job.content = el("div", { class: "result-content" },
      el("p", { class: "working-text", text: "Waiting for its turn…" }));
    const size = Number.isFinite(job.file.size) ? fmtBytes(job.file.size) : "";
    job.card = el("li", { class: "result", dataset: { state: "queued", job: String(job.id) } },
      thumb,
      el("div", { class: "result-body" },
        el("div", { class: "result-title" },
          el("p", { class: "file-name", title: `${name} · ${size}`, text: name }),
          job.badge),
        job.content));
    return job.card;
  }

  function addFiles(fileList) {
    const files = Array.from(fileList || []).filter((f) => f instanceof File);
    if (!files.length) return;
    const fragment = document.createDocumentFragment();
    for (const file of files) {
      const job = { id: nextJobId++, file, state: "queued", predictions: [] };
      jobs.push(job);
      fragment.append(makeCard(job));
      setState(job, "queued", "Queued");
    }
    results.prepend(fragment);
    updateQueueStatus();
    pump();
  }

  async function pump() {
    if (pumping) return;
    pumping = true;
    try {
      for (;;) {
        const job = jobs.find((j) => j.state === "queued");
        if (!job) break;
        await classify(job);
        updateQueueStatus();
      }
    } finally {
      pumping = false;
      updateQueueStatus();
    }
  }

  function showWorking(job, text) {
    job.content.replaceChildren(el("p", { class: "working-text", text }));
  }

  function showError(job, title, message, status) {
    setState(job, "error", status ? `Error ${status}` : "Error");
    const actions = el("div", { class: "error-actions" },
      el("button", {
        type: "button", class: "ghost-button small",
        onclick: () => { setState(job, "queued", "Queued"); showWorking(job, "Waiting for its turn…"); updateQueueStatus(); pump(); },
      }, "Try again"),
      status === 401 ? el("button", { type: "button", class: "ghost-button small", onclick: () => openSettings(true) }, "Enter API key") : null);
    job.content.replaceChildren(el("div", { class: "error-box", role: "alert" },
      el("strong", { text: title }),
      el("span", { class: "error-message", text: message.charAt(0).toUpperCase() + message.slice(1) }),
      actions));
    announcer.textContent = `${job.file.name || "Image"}: ${title}. ${message}`;
  }

  function showResult(job, timing) {
    setState(job, "done", "Done");
    job.barsEl = el("ol", { class: "bars", "aria-label": "Top classes" });
    renderBars(job.barsEl, job.predictions, topK());
    const chip = (label, value, title) =>
      el("span", { class: "chip", title: title || null }, label + " ", el("strong", { text: value }));
    const t = el("p", { class: "timing" },
      chip("Round trip", fmtMs(timing.roundTrip), "Measured in this browser: upload, queue, inference and response"),
      timing.total !== null ? chip("Server", fmtMs(timing.total), "X-Total-Time: time spent inside the server") : null,
      timing.queue !== null ? chip("Queue", fmtMs(timing.queue), "X-Queue-Time: waiting for an engine worker") : null,
      timing.inference !== null ? chip("Inference", fmtMs(timing.inference), "X-Inference-Time: the model itself") : null,
      job.model ? el("span", { class: "chip model", title: "X-Model: the model that answered" }, "Model ", el("strong", { text: job.model })) : null,
      timing.requestId ? el("span", { class: "chip rid", title: `X-Request-Id: ${timing.requestId}` }, "id " + timing.requestId.slice(0, 8)) : null);
    job.content.replaceChildren(job.barsEl, t);
    const top = job.predictions[0];
    const by = job.model ? ` (${job.model})` : "";
    announcer.textContent = top
      ? `${job.file.name || "Image"}: ${top.label}, ${fmtPercent(top.probability)}${by}`
      : `${job.file.name || "Image"}: no classes returned`;
  }

  async function classify(job) {
    setState(job, "working", "Classifying");
    showWorking(job, "Uploading and classifying…");
    for (let attempt = 0; ; attempt++) {
      const form = new FormData();
      form.append("image", job.file, job.file.name || "pasted-image");
      const started = performance.now();
      let response;
      const model = chosenModel();
      const query = `top_k=${REQUEST_TOP_K}` + (model ? `&model=${encodeURIComponent(model)}` : "");
      try {
        response = await fetch(`classify?${query}`, {
          method: "POST",
          body: form,
          headers: authHeaders(),
          cache: "no-store",
        });
      } catch (err) {
        showError(job, "Could not reach the server",
          `The upload did not get an answer (${err && err.message ? err.message : "network error"}). Check that the service is running.`);
        return;
      }
      if (response.status === 503 && attempt < MAX_BUSY_RETRIES) {
        const message = await readError(response);
        const wait = Math.min(10, Math.max(0.5, parseFloat(response.headers.get("Retry-After")) || 1));
        showWorking(job, `${message} Trying again in ${wait} s…`);
        await sleep(wait * 1000);
        showWorking(job, "Uploading and classifying…");
        continue;
      }
      if (!response.ok) {
        const message = await readError(response);
        showError(job, `${errorTitle(response.status)} (${response.status})`, message, response.status);
        return;
      }
      let body;
      try {
        body = await response.json();
      } catch {
        showError(job, "Unexpected answer", "The server's response was not the expected JSON.", response.status);
        return;
      }
      const roundTrip = performance.now() - started;
      if (!Array.isArray(body)) {
        showError(job, "Unexpected answer", "The server's response was not a list of classes.", response.status);
        return;
      }
      job.predictions = body.filter((p) => p && typeof p.label === "string");
      job.imageId = response.headers.get("X-Image-Id");
      job.model = response.headers.get("X-Model");
      if (job.imageId) job.card.dataset.imageId = job.imageId;
      showResult(job, {
        roundTrip,
        total: headerMs(response, "X-Total-Time"),
        queue: headerMs(response, "X-Queue-Time"),
        inference: headerMs(response, "X-Inference-Time"),
        requestId: response.headers.get("X-Request-Id"),
      });
      refreshHistorySoon(job.imageId);
      return;
    }
  }

  clearButton.addEventListener("click", () => {
    for (let i = jobs.length - 1; i >= 0; i--) {
      const job = jobs[i];
      if (job.state === "done" || job.state === "error") {
        URL.revokeObjectURL(job.previewUrl);
        job.card.remove();
        jobs.splice(i, 1);
      }
    }
    updateQueueStatus();
    $("file-input").focus();
  });

  // ---------- file picker, drag and drop, paste ----------

  const fileInput = $("file-input");
  const dropzone = $("dropzone");

  fileInput.addEventListener("change", () => {
    addFiles(fileInput.files);
    fileInput.value = "";
  });

  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  let dragDepth = 0;
  window.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth++;
    dropzone.classList.add("dragging");
  });
  window.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", (e) => {
    if (!hasFiles(e)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropzone.classList.remove("dragging");
  });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove("dragging");
    addFiles(e.dataTransfer.files);
  });

  document.addEventListener("paste", (e) => {
    const data = e.clipboardData;
    if (!data) return;
    let files = Array.from(data.files || []);
    if (!files.length && data.items) {
      files = Array.from(data.items)
        .filter((item) => item.kind === "file")
        .map((item) => item.getAsFile())
        .filter(Boolean);
    }
    if (!files.length) return; // plain text: let inputs handle it
    e.preventDefault();
    addFiles(files.map((f, i) => (f.name && f.name !== "image.png")
      ? f
      : new File([f], `pasted-${new Date().toISOString().slice(11, 19).replace(/:/g, "")}${files.length > 1 ? "-" + (i + 1) : ""}.${(f.type.split("/")[1] || "png").replace("jpeg", "jpg")}`, { type: f.type })));
  });

  // ---------- history ----------

  const historyGrid = $("history-grid");
  const historyStatus = $("history-status");
  const historyMore = $("history-more");
  const historyItems = new Map(); // id -> { record, node }
  const thumbUrls = new Map(); // id -> Promise<string | null>, only when an API key is set
  let historyNext = null;
  let historyBusy = false;

  // Stored images sit behind the API key: with a key, fetch them with the
  // header and show a blob URL; without, let the browser load and cache them.
  function imageUrl(id) {
    const direct = "api/images/" + encodeURIComponent(id);
    if (!apiKey()) return Promise.resolve(direct);
    if (!thumbUrls.has(id)) {
      thumbUrls.set(id, fetch(direct, { headers: authHeaders() })
        .then((r) => (r.ok ? r.blob() : null))
        .then((b) => (b ? URL.createObjectURL(b) : null))
        .catch(() => null));
    }
    return thumbUrls.get(id);
  }

  function setImage(img, id) {
    imageUrl(id).then((url) => { if (url) img.src = url; });
  }

  function topOf(record) {
    return (record.predictions && record.predictions[0]) || null;
  }

  function historyNode(record) {
    const top = topOf(record);
    const created = new Date(record.created);
    const label = top ? top.label : "no result";
    const name = record.filename || `${record.format || "image"} upload`;
    const img = el("img", { class: "h-thumb", alt: "", loading: "lazy", decoding: "async", width: "160", height: "120" });
    setImage(img, record.id);
    const time = el("time", { datetime: record.created, title: created.toLocaleString(), text: fmtAgo(created) });
    const button = el("button", {
      type: "button",
      class: "history-item",
      "aria-label": `${label}${top ? ", " + fmtPercent(top.probability) : ""} — ${name}, ${created.toLocaleString()}. Show the full result.`,
      dataset: { id: record.id },
      onclick: () => openDetail(record.id),
    },
    img,
    el("span", { class: "h-text" },
      el("span", { class: "h-label", title: label, text: label }),
      el("span", { class: "h-sub" },
        el("span", { text: top ? fmtPercent(top.probability) : "" }),
        time)));
    return el("li", {}, button);
  }

  function upsertHistory(record, where) {
    const existing = historyItems.get(record.id);
    if (existing && existing.record.created === record.created) {
      if (where === "top") historyGrid.prepend(existing.node);
      return existing.node;
    }
    const node = historyNode(record);
    if (existing) existing.node.replaceWith(node);
    historyItems.set(record.id, { record, node });
    if (where === "top") historyGrid.prepend(node);
    else if (!existing) historyGrid.append(node);
    return node;
  }

  function setHistoryMessage(text, action) {
    historyStatus.replaceChildren(text);
    if (action) historyStatus.append(" ", action);
  }

  async function fetchHistory(before) {
    const params = new URLSearchParams({ limit: String(HISTORY_PAGE) });
    if (before) params.set("before", before);
    const response = await fetch("api/history?" + params.toString(), { headers: authHeaders(), cache: "no-store" });
    if (!response.ok) {
      const error = new Error(await readError(response));
      error.status = response.status;
      throw error;
    }
    const page = await response.json();
    return {
      items: Array.isArray(page.items) ? page.items.filter((r) => r && typeof r.id === "string") : [],
      next: typeof page.next_before === "string" && page.next_before ? page.next_before : null,
    };
  }

  function historyFailed(err) {
    if (err.status === 401) {
      setHistoryMessage("Recent uploads need the API key.",
        el("button", { type: "button", class: "ghost-button small", onclick: () => openSettings(true) }, "Enter API key"));
    } else if (err.status === 404) {
      setHistoryMessage(`History is not available: ${err.message}.`);
    } else if (err.status) {
      setHistoryMessage(`Could not load recent uploads (${err.status}): ${err.message}`);
    } else {
      setHistoryMessage(`Could not load recent uploads: ${err.message || "network error"}.`);
    }
    historyStatus.classList.add("inline-error");
  }

  function historyLoaded() {
    historyStatus.classList.remove("inline-error");
    if (historyItems.size) setHistoryMessage("");
    else setHistoryMessage("No uploads yet. Classify an image and it shows up here.");
    historyMore.hidden = !historyNext;
  }

  async function loadHistory(reset) {
    if (historyBusy) return;
    historyBusy = true;
    historyMore.disabled = true;
    if (reset) setHistoryMessage(historyItems.size ? "" : "Loading…");
    try {
      const page = await fetchHistory(reset ? null : historyNext);
      if (reset) {
        historyItems.clear();
        historyGrid.replaceChildren();
      }
      for (const r of page.items) upsertHistory(r, "end");
      historyNext = page.next;
      historyLoaded();
    } catch (err) {
      if (reset) { historyItems.clear(); historyGrid.replaceChildren(); historyMore.hidden = true; }
      historyFailed(err);
    } finally {
      historyBusy = false;
      historyMore.disabled = false;
    }
  }

  // Newest page merged on top, keeping what "load more" already fetched.
  // Uploads are stored in the background, so look again if ours is missing.
  async function refreshHistorySoon(imageId) {
    for (const wait of [250, 1000, 2500]) {
      await sleep(wait);
      try {
        const page = await fetchHistory(null);
        if (!historyItems.size) historyNext = page.next;
        for (const r of page.items.slice().reverse()) {
          const known = historyItems.has(r.id);
          const node = upsertHistory(r, "top");
          if (!known || r.id === imageId) {
            node.firstChild.classList.add("fresh");
            setTimeout(() => node.firstChild.classList.remove("fresh"), 2500);
          }
        }
        historyLoaded();
        if (!imageId || historyItems.has(imageId)) return;
      } catch (err) {
        historyFailed(err);
        return;
      }
    }
  }

  historyMore.addEventListener("click", () => loadHistory(false));
  $("history-refresh").addEventListener("click", () => loadHistory(true));
  setInterval(() => {
    for (const { node } of historyItems.values()) {
      const time = node.querySelector("time");
      if (time) time.textContent = fmtAgo(new Date(time.getAttribute("datetime")));
    }
  }, 30000);

  // ---------- detail dialog ----------

  const detail = $("detail");
  const detailImg = $("detail-img");

  function metaRow(term, value, cls) {
    return el("div", {}, el("dt", { text: term }), el("dd", { class: cls || null, text: value }));
  }

  function openDetail(id) {
    const entry = historyItems.get(id);
    if (!entry) return;
    const r = entry.record;
    const top = topOf(r);
    $("detail-title").textContent = top ? `${top.label} · ${fmtPercent(top.probability)}` : "Result";
    detailImg.removeAttribute("src");
    detailImg.alt = r.filename ? `Uploaded image ${r.filename}` : "Uploaded image";
    setImage(detailImg, r.id);
    renderBars($("detail-bars"), Array.isArray(r.predictions) ? r.predictions : [], 10);
    const created = new Date(r.created);
    const rows = [
      r.filename ? metaRow("File", r.filename) : null,
      metaRow("Image", [
        r.width && r.height ? `${r.width} × ${r.height}` : null,
        r.format ? String(r.format).toUpperCase() : null,
        Number.isFinite(r.bytes) ? fmtBytes(r.bytes) : null,
      ].filter(Boolean).join(" · ") || "—"),
      metaRow("Classified", Number.isNaN(created.getTime()) ? String(r.created) : created.toLocaleString()),
      metaRow("Model", r.model || "—"),
      metaRow("Engine", r.engine || "—"),
      metaRow("Image id", r.id.slice(0, 16) + "…", "mono"),
    ];
    $("detail-meta").replaceChildren(...rows.filter(Boolean));
    $("detail-meta").lastChild.title = r.id;
    detail.dataset.id = r.id;
    if (typeof detail.showModal === "function") detail.showModal();
    else detail.setAttribute("open", "");
    $("detail-close").focus();
  }

  function closeDetail() {
    if (typeof detail.close === "function") detail.close();
    else detail.removeAttribute("open");
  }
  $("detail-close").addEventListener("click", closeDetail);
  detail.addEventListener("click", (e) => { if (e.target === detail) closeDetail(); });
  detail.addEventListener("close", () => {
    const id = detail.dataset.id;
    const entry = id && historyItems.get(id);
    if (entry) entry.node.firstChild.focus();
  });

  // ---------- live stats ----------

  const statusPill = $("server-status");
  const statusText = $("server-status-text");
  const statsError = $("stats-error");
  const samples = []; // { t, rps, p50, p95 }
  let statsTimer = null;
  let lastStatsOk = 0;
  // api/stats/deployment (every replica, through their Prometheus) is
  // asked first; until this time the page uses api/stats (the replica that
  // answers) instead.
  let deploymentAfter = 0;
  let deploymentProblem = "";

  function setServer(state, text) {
    statusPill.dataset.state = state;
    statusText.textContent = text;
  }

  function setStat(id, value, unit) {
    const node = $(id);
    if (unit && value !== "—") node.replaceChildren(value, el("span", { class: "unit", text: unit }));
    else node.textContent = value;
  }

  function splitMs(ms) {
    const text = fmtMs(ms);
    if (text === "—") return ["—", null];
    const [v, u] = text.split(" ");
    return [v, u];
  }

  function renderScope(s) {
    const scope = $("stats-scope");
    const r = s.replicas;
    if (s.scope === "deployment" && r) {
      scope.dataset.scope = "deployment";
      scope.textContent = `all replicas · ${r.up} of ${r.discovered} up`;
      scope.title = `Every replica together, from Prometheus (${s.source || "configured"}); ${r.ready} ready`;
    } else {
      scope.dataset.scope = "replica";
      scope.textContent = "one replica";
      scope.title = "The figures of the replica that answered" +
        (deploymentProblem ? `; the whole deployment's are unavailable: ${deploymentProblem}` : "");
    }
  }

  function renderStats(s) {
    renderScope(s);
    setServer(s.ready ? "ready" : "loading", s.ready ? "Ready" : "Loading model…");
    const rps = Number(s.requests_per_second);
    const uptime = Number(s.uptime_seconds);
    setStat("stat-rps", fmtRate(rps));
    if (Number.isFinite(Number(s.requests_total))) {
      $("stat-requests-label").replaceChildren("Requests ", el("span", { class: "muted", text: "(total)" }));
      setStat("stat-requests", fmtNumber(Number(s.requests_total), 0));
    } else {
      // requests_per_second is the count over the last minute (or the
      // uptime, if shorter, at least one second) divided by that span.
      const span = Math.max(1, Math.min(60, Number.isFinite(uptime) ? uptime : 60));
      setStat("stat-requests", Number.isFinite(rps) ? fmtNumber(Math.round(rps * span), 0) : "—");
    }
    const lat = s.latency_ms || {};
    setStat("stat-p50", ...splitMs(lat.p50));
    setStat("stat-p95", ...splitMs(lat.p95));
    setStat("stat-p99", ...splitMs(lat.p99));
    setStat("stat-queue", fmtNumber(Number(s.queue_depth), 0));
    setStat("stat-batch", Number(s.batches) > 0 ? fmtNumber(Number(s.mean_batch_size), 2) : "—");
    setStat("stat-stored", fmtNumber(Number(s.images_stored), 0));
    $("stat-model").textContent = s.model || "—";
    renderModels(s.models);
    $("stat-engine").textContent = s.engine || "—";
    $("stat-engine-detail").textContent = s.engine_detail || "";
    $("stat-engine-detail").hidden = !s.engine_detail;
    $("stat-uptime").textContent = fmtDuration(uptime);
    $("stats-updated").textContent = "updated " + new Date().toLocaleTimeString();

    const now = Date.now();
    samples.push({
      t: now,
      rps: Number.isFinite(rps) ? rps : null,
      p50: Number.isFinite(lat.p50) ? lat.p50 : null,
      p95: Number.isFinite(lat.p95) ? lat.p95 : null,
    });
    while (samples.length && samples[0].t < now - CHART_WINDOW_MS) samples.shift();
    drawCharts(now);
  }

  // Rounds a chart's top up to 1, 2, 2.5 or 5 times a power of ten.
  // Axis labels: at most three significant digits, no trailing zeros.
  const fmtAxis = (v) => String(Number(v.toPrecision(3)));

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  // Draws series of { t, v } (v may be null: a gap) over the last window.
  function drawChart(target, series, floor, now, span) {
    const W = 300, H = 90, TOP = 16, BOTTOM = 3;
    let max = floor;
    for (const s of series) for (const p of s.points) if (p.v !== null && p.v > max) max = p.v;
    max = niceCeil(max * 1.1);
    const x = (t) => ((t - (now - span)) / span) * W;
    const y = (v) => H - BOTTOM - (v / max) * (H - TOP - BOTTOM);
    const children = [
      svg("line", { class: "grid", x1: 0, x2: W, y1: y(max), y2: y(max) }),
      svg("line", { class: "grid", x1: 0, x2: W, y1: y(max / 2), y2: y(max / 2) }),
    ];
    for (const s of series) {
      const segments = [];
      let current = [];
      for (const p of s.points) {
        if (p.v === null) { if (current.length) segments.push(current); current = []; continue; }
        current.push([x(p.t), y(p.v)]);
      }
      if (current.length) segments.push(current);
      for (const seg of segments) {
        if (seg.length === 1) seg.push([seg[0][0] + 1.5, seg[0][1]]);
        const pts = seg.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" ");
        if (s.area) {
          const first = seg[0][0].toFixed(1), last = seg[seg.length - 1][0].toFixed(1);
          children.push(svg("polygon", { class: "area", points: `${first},${H} ${pts} ${last},${H}` }));
        }
        children.push(svg("polyline", { class: `line ${s.cls}`, points: pts }));
      }
    }
    target.replaceChildren(...children);
    return max;
  }

  // The charts cover the last five minutes once there is that much data;
  // before that, the time since the page opened (at least a minute).
  function chartSpan(now) {
    const first = samples.length ? samples[0].t : now;
    return Math.min(CHART_WINDOW_MS, Math.max(CHART_MIN_SPAN_MS, now - first));
  }

  function fmtSpan(ms) {
    const s = Math.round(ms / 1000);
    return s < 120 ? `last ${s} s` : `last ${Math.round(s / 60)} min`;
  }

  function drawCharts(now) {
    const span = chartSpan(now);
    const spanText = fmtSpan(span);
    $("chart-span").textContent = spanText;
    const rpsSeries = [{ cls: "rps", area: true, points: samples.map((s) => ({ t: s.t, v: s.rps })) }];
    const rpsMax = drawChart($("chart-rps"), rpsSeries, 1, now, span);
    $("chart-rps-max").textContent = `${fmtAxis(rpsMax)} req/s`;
    const last = samples[samples.length - 1] || {};
    const peak = Math.max(0, ...samples.map((s) => s.rps || 0));
    $("chart-rps").setAttribute("aria-label",
      `Requests per second, ${spanText}: now ${fmtRate(last.rps ?? NaN)}, peak ${fmtRate(peak)}`);

    const latSeries = [
      { cls: "p95", points: samples.map((s) => ({ t: s.t, v: s.p95 })) },
      { cls: "p50", points: samples.map((s) => ({ t: s.t, v: s.p50 })) },
    ];
    const latMax = drawChart($("chart-latency"), latSeries, 5, now, span);
    $("chart-latency-max").textContent = `${fmtAxis(latMax)} ms`;
    $("chart-latency").setAttribute("aria-label",
      `Latency, ${spanText}: p50 now ${fmtMs(last.p50)}, p95 now ${fmtMs(last.p95)}`);
  }

  // The deployment's figures when the replicas serve them, else the
  // answering replica's own.
  async function fetchStats() {
    if (Date.now() >= deploymentAfter) {
      try {
        const response = await fetch("api/stats/deployment", { cache: "no-store" });
        if (response.ok) {
          deploymentProblem = "";
          return await response.json();
        }
        const absent = response.status === 404;
        deploymentProblem = absent ? "" : `${response.status}: ${await readError(response)}`;
        deploymentAfter = Date.now() + (absent ? DEPLOYMENT_ABSENT_RETRY_MS : DEPLOYMENT_FAILED_RETRY_MS);
      } catch (err) {
        deploymentProblem = err && err.message ? err.message : "network error";
        deploymentAfter = Date.now() + DEPLOYMENT_FAILED_RETRY_MS;
      }
    }
    const response = await fetch("api/stats", { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status}: ${await readError(response)}`);
    return await response.json();
  }

  async function pollStats() {
    clearTimeout(statsTimer);
    statsTimer = null;
    try {
      renderStats(await fetchStats());
      lastStatsOk = Date.now();
      statsError.hidden = true;
    } catch (err) {
      setServer("offline", "Unreachable");
      statsError.hidden = false;
      statsError.textContent = `Live stats unavailable (${err && err.message ? err.message : "network error"})` +
        (lastStatsOk ? `; last update ${new Date(lastStatsOk).toLocaleTimeString()}.` : ".");
      const now = Date.now();
      samples.push({ t: now, rps: null, p50: null, p95: null });
      while (samples.length && samples[0].t < now - CHART_WINDOW_MS) samples.shift();
      drawCharts(now);
    }
    if (statsTimer === null) {
      statsTimer = setTimeout(pollStats, document.hidden ? STATS_HIDDEN_EVERY_MS : STATS_EVERY_MS);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollStats();
  });

  // ---------- start ----------

  updateQueueStatus();
  drawCharts(Date.now());
  pollStats();
  loadHistory(true);
})();
