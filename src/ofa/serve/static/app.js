// The OFA page: pick or drop an image, choose a task, send it to /v1/<task> as multipart,
// show the answer, the latency and, for grounding, the box on the image.
// Plain JavaScript with no dependencies, so the page works offline and needs no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const BOX_COLOR = "#ff00ff";
const NEEDS_IMAGE = new Set(["caption", "vqa", "ground", "entail", "classify"]);

const state = { file: null, bitmap: null, scale: 1 };

function apiHeaders() {
  const key = $("apikey").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// ------------------------------------------------------------------ the image
async function decode(file) {
  // Draw the pixels as stored, without EXIF rotation: that is what the model sees, so the
  // grounding box lands where the model meant it.
  try {
    return await createImageBitmap(file, { imageOrientation: "none" });
  } catch (_) {
    return await createImageBitmap(file);
  }
}

function draw(box) {
  const canvas = $("canvas");
  const { bitmap } = state;
  if (!bitmap) return;
  // small images are enlarged (pixelated) so that they and their box stay readable
  state.scale = Math.max(1, Math.floor(480 / Math.max(bitmap.width, bitmap.height)));
  canvas.width = bitmap.width * state.scale;
  canvas.height = bitmap.height * state.scale;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  if (box) {
    const [x0, y0, x1, y1] = box.map((v) => v * state.scale);
    ctx.strokeStyle = BOX_COLOR;
    ctx.lineWidth = Math.max(2, state.scale);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  canvas.hidden = false;
  $("drop-hint").hidden = true;
}

async function useFile(file) {
  if (!file) return;
  clearOutput();
  try {
    state.bitmap = await decode(file);
  } catch (_) {
    state.file = state.bitmap = null;
    showError(`${file.name} is not an image this browser can show`);
    return;
  }
  state.file = file;
  $("file-name").textContent = `${file.name} (${state.bitmap.width} × ${state.bitmap.height})`;
  draw(null);
  $("status").textContent = "Ready.";
}

// ------------------------------------------------------------------ the form
function showFields() {
  const task = $("task").value;
  for (const label of document.querySelectorAll("label[data-for]")) {
    label.hidden = label.dataset.for !== task;
  }
}

function buildForm(task) {
  const form = new FormData();
  if (state.file && task !== "summarize") form.append("image", state.file, state.file.name);
  const text = (id) => $(id).value.trim();
  if (task === "vqa") form.append("question", text("question"));
  if (task === "ground") form.append("text", text("text"));
  if (task === "entail") form.append("hypothesis", text("hypothesis"));
  if (task === "generate") form.append("prompt", text("prompt"));
  if (task === "summarize") form.append("text", text("article"));
  if (task === "classify") {
    for (const name of text("classes").split(",")) {
      if (name.trim()) form.append("classes", name.trim());
    }
  }
  return form;
}

function clearOutput() {
  for (const id of ["result", "latency", "error"]) $(id).textContent = "";
  $("ranking").hidden = true;
  $("ranking").replaceChildren();
}

function showError(message) {
  $("error").textContent = message;
  $("status").textContent = "";
}

function show(task, r, roundTrip) {
  let text;
  if (task === "caption") text = r.caption;
  else if (task === "vqa") text = r.answer;
  else if (task === "ground") {
    text = r.box ? `box [${r.box.map((v) => Math.round(v)).join(", ")}]` : "no region found";
    draw(r.box);
  } else if (task === "entail") text = `${r.answer} (${r.label})`;
  else if (task === "classify") {
    text = r.label;
    const list = $("ranking");
    list.replaceChildren(...r.topk.map((c) => {
      const item = document.createElement("li");
      item.textContent = `${c.label} (${c.score === null ? "–" : c.score.toFixed(3)})`;
      return item;
    }));
    list.hidden = false;
  } else if (task === "summarize") text = r.summary;
  else text = r.text;
  $("result").textContent = text || "(empty)";
  $("latency").textContent =
    `${r.latency_ms.toFixed(0)} ms on the server (${r.queue_ms.toFixed(0)} ms queued, ` +
    `batch of ${r.batch_size}) · ${roundTrip.toFixed(0)} ms round trip`;
}

async function run(event) {
  event.preventDefault();
  const task = $("task").value;
  clearOutput();
  if (NEEDS_IMAGE.has(task) && !state.file) {
    showError("Pick an image first.");
    return;
  }
  if (task !== "ground") draw(null);
  $("run").disabled = true;
  $("status").textContent = "Running…";
  const started = performance.now();
  try {
    const response = await fetch(`/v1/${task}`, {
      method: "POST", body: buildForm(task), headers: apiHeaders(),
    });
    const roundTrip = performance.now() - started;
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON: keep null */ }
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : response.statusText;
      showError(`${response.status}: ${detail}`);
      return;
    }
    $("status").textContent = "Done.";
    show(task, body, roundTrip);
  } catch (err) {
    showError(`The server did not answer: ${err.message}`);
  } finally {
    $("run").disabled = false;
  }
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models", { headers: apiHeaders() });
    if (response.status === 401) {
      $("model").textContent = "API key required (open “API key” below the task)";
      return;
    }
    const body = await response.json();
    const m = body.models[0];
    $("model").textContent = `model ${m.id} · ${m.device} · ${m.dtype}`;
  } catch (_) {
    $("model").textContent = "server unreachable";
  }
}

// ------------------------------------------------------------------ wiring
function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => useFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    useFile(e.dataTransfer.files[0]);
  });
  $("task").addEventListener("change", () => { showFields(); clearOutput(); });
  $("form").addEventListener("submit", run);
  $("apikey").addEventListener("change", loadModel);
  showFields();
  loadModel();
}

init();
