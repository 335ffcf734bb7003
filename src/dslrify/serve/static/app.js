// dslrify serve: the page's whole logic, plain JavaScript (no build step, no dependencies).
// Photos are uploaded once; model or strength changes only ask the server to re-render by id.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const photos = new Map(); // client id -> photo state
const queue = []; // photos waiting for the server, in order
const CONCURRENCY = 2; // one uploading while another is enhanced; the server bounds the rest
let running = 0;
let nextKey = 0;

const modelSelect = $("#model");
const strength = $("#strength");
const strengthValue = $("#strength-value");
const downloadAll = $("#download-all");

function settings() {
  return { model: modelSelect.value || null, strength: Number(strength.value) / 100 };
}

function showNotice(text) {
  const n = $("#notice");
  n.textContent = text;
  n.hidden = !text;
}

function errorText(body, fallback) {
  // Every error the server sends is {"error": ..., "advice": ...}; anything else is not from it.
  if (body && body.error) return body.advice ? `${body.error} — ${body.advice}` : body.error;
  return fallback;
}

async function loadModels() {
  try {
    const r = await fetch("/api/models");
    const info = await r.json();
    for (const m of info.models) {
      const o = new Option(m.name, m.name, false, m.name === info.default);
      o.title = m.description;
      modelSelect.add(o);
    }
    $("#limits").textContent =
      `up to ${info.max_upload_mb} MB and ${(info.max_pixels / 1e6).toFixed(0)} MP per photo`;
  } catch (e) {
    showNotice(`cannot reach the dslrify server: ${e}`);
  }
}

// --- cards -------------------------------------------------------------------------------------

function addPhoto(file) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  const p = { key: nextKey++, file, card, id: null, result: null, pos: 50, wanted: null };
  $(".name", card).textContent = file.name;
  $(".name", card).title = file.name;
  wireCard(p);
  $("#photos").prepend(card);
  photos.set(p.key, p);
  enqueue(p);
}

function setStatus(p, text, { error = false, progress = null, busy = false } = {}) {
  $(".status", p.card).textContent = text;
  p.card.classList.toggle("error", error);
  const bar = $(".progress", p.card);
  bar.hidden = progress === null && !busy;
  bar.classList.toggle("busy", busy);
  $(".bar", bar).style.width = busy ? "" : `${Math.round((progress || 0) * 100)}%`;
}

function setPosition(p, pos) {
  p.pos = Math.max(0, Math.min(100, pos));
  $(".stage", p.card).style.setProperty("--pos", `${p.pos}%`);
  $(".handle", p.card).setAttribute("aria-valuenow", String(Math.round(p.pos)));
}

function wireCard(p) {
  const { card } = p;
  const stage = $(".stage", card);
  const handle = $(".handle", card);
  let dragging = false;
  const follow = (ev) => {
    const box = stage.getBoundingClientRect();
    setPosition(p, ((ev.clientX - box.left) / box.width) * 100);
  };
  // Press anywhere on the photo and drag: the handle follows the pointer (mouse, pen or finger).
  stage.addEventListener("pointerdown", (ev) => {
    if (card.classList.contains("side")) return;
    dragging = true;
    stage.setPointerCapture(ev.pointerId);
    follow(ev);
    ev.preventDefault();
  });
  stage.addEventListener("pointermove", (ev) => dragging && follow(ev));
  const stop = () => { dragging = false; };
  stage.addEventListener("pointerup", stop);
  stage.addEventListener("pointercancel", stop);
  handle.addEventListener("keydown", (ev) => {
    const step = ev.shiftKey ? 10 : 2;
    if (ev.key === "ArrowLeft") setPosition(p, p.pos - step);
    else if (ev.key === "ArrowRight") setPosition(p, p.pos + step);
    else return;
    ev.preventDefault();
  });

  const sideBtn = $(".side-toggle", card);
  sideBtn.addEventListener("click", () => {
    const on = card.classList.toggle("side");
    sideBtn.setAttribute("aria-pressed", String(on));
  });
  const zoomBtn = $(".zoom-toggle", card);
  zoomBtn.addEventListener("click", () => {
    const on = card.classList.toggle("zoom");
    zoomBtn.setAttribute("aria-pressed", String(on));
    showImages(p);
  });
  $(".remove", card).addEventListener("click", () => {
    photos.delete(p.key);
    const i = queue.indexOf(p);
    if (i >= 0) queue.splice(i, 1);
    card.remove();
    if (p.id) fetch(`/api/photo/${p.id}`, { method: "DELETE" }).catch(() => {});
    updateDownloadAll();
  });
}

function showImages(p) {
  if (!p.result) return;
  const zoom = p.card.classList.contains("zoom");
  const urls = zoom ? p.result.full : p.result.preview; // 100% fetches full resolution only when asked
  const before = $(".before", p.card);
  const after = $(".after", p.card);
  if (before.getAttribute("src") !== urls.original) before.src = urls.original;
  if (after.getAttribute("src") !== urls.result) after.src = urls.result;
  $(".viewport", p.card).hidden = false;
}

function showResult(p, result) {
  p.result = result;
  // The upright aspect ratio sizes the stage so that the whole photo fits the window (style.css).
  $(".stage", p.card).style.setProperty("--ratio", String(result.width / result.height));
  p.card.classList.add("ready"); // the view and download buttons work from now on
  showImages(p);
  const dl = $(".download", p.card);
  dl.href = result.download;
  dl.download = result.download_name;
  dl.setAttribute("aria-disabled", "false");
  const pct = Math.round(result.strength * 100);
  setStatus(p, `${result.model}, ${pct}% — ${result.seconds.toFixed(1)} s (${result.width} × ${result.height})`);
  updateDownloadAll();
}

function updateDownloadAll() {
  const ids = [...photos.values()].filter((p) => p.result).map((p) => p.id);
  downloadAll.href = ids.length ? `/api/zip?ids=${ids.join(",")}` : "#";
  downloadAll.setAttribute("aria-disabled", String(!ids.length));
}

// --- the client-side queue ---------------------------------------------------------------------

function enqueue(p) {
  if (!queue.includes(p)) {
    queue.push(p);
    if (!p.busy) setStatus(p, p.result ? "re-render queued" : "queued", { progress: 0 });
  }
  pump();
}

function pump() {
  while (running < CONCURRENCY && queue.length) {
    const p = queue.shift();
    running++;
    p.busy = true;
    process(p).finally(() => {
      p.busy = false;
      running--;
      // Settings changed while this photo was rendering: render it again with the new ones.
      if (photos.has(p.key) && p.id && !sameSettings(p.result, settings()) && !p.failed) enqueue(p);
      pump();
    });
  }
}

function sameSettings(result, s) {
  return result && result.model === (s.model || result.model) && Math.abs(result.strength - s.strength) < 1e-6;
}

function upload(p) {
  // XMLHttpRequest, not fetch: it reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/upload");
    xhr.responseType = "json";
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) setStatus(p, `uploading ${Math.round((ev.loaded / ev.total) * 100)}%`, { progress: ev.loaded / ev.total });
    };
    xhr.onload = () => {
      if (xhr.status === 200) resolve(xhr.response);
      else reject(new Error(errorText(xhr.response, `upload failed (HTTP ${xhr.status})`)));
    };
    xhr.onerror = () => reject(new Error("upload failed: the server cannot be reached"));
    const form = new FormData();
    form.append("file", p.file, p.file.name);
    xhr.send(form);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function enhance(p) {
  for (;;) {
    const s = settings();
    setStatus(p, `enhancing with ${s.model || "the server's model"}…`, { busy: true });
    const r = await fetch(`/api/enhance/${p.id}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(s),
    });
    const body = await r.json().catch(() => null);
    if (r.ok) return body;
    if (r.status === 503) {
      // The server's queue is full: wait as told, then try again (the photo stays uploaded).
      const wait = Number(r.headers.get("Retry-After") || 3);
      setStatus(p, `server busy, retrying in ${wait} s`, { busy: true });
      await sleep(wait * 1000);
      continue;
    }
    throw new Error(errorText(body, `enhancement failed (HTTP ${r.status})`));
  }
}

async function process(p) {
  try {
    if (!p.id) {
      const info = await upload(p);
      p.id = info.id;
    }
    if (!photos.has(p.key)) return;
    const result = await enhance(p);
    if (photos.has(p.key)) showResult(p, result);
  } catch (e) {
    p.failed = true;
    setStatus(p, e.message, { error: true });
  }
}

// Model or strength changed: re-render every uploaded photo, without uploading it again.
function rerenderAll() {
  for (const p of photos.values()) {
    if (p.id && !p.failed && !p.busy) enqueue(p);
  }
}

// --- page wiring -------------------------------------------------------------------------------

function addFiles(list) {
  showNotice("");
  for (const f of list) addPhoto(f);
}

const drop = $("#drop");
$("#files").addEventListener("change", (ev) => {
  addFiles(ev.target.files);
  ev.target.value = ""; // picking the same file again still fires "change"
});
for (const type of ["dragenter", "dragover"]) {
  window.addEventListener(type, (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) {
  window.addEventListener(type, () => drop.classList.remove("over"));
}
window.addEventListener("drop", (ev) => {
  ev.preventDefault();
  if (ev.dataTransfer && ev.dataTransfer.files.length) addFiles(ev.dataTransfer.files);
});
drop.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" || ev.key === " ") $("#files").click();
});

strength.addEventListener("input", () => { strengthValue.textContent = `${strength.value}%`; });
strength.addEventListener("change", rerenderAll); // on release, not on every step of the drag
modelSelect.addEventListener("change", rerenderAll);

loadModels();
