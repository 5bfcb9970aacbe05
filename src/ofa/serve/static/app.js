// The OFA page: pick or drop an image, choose a task, send it to its endpoint as multipart,
// show the answer, the latency and, for a result with a box, the box on the image; drawn
// images (text-to-image) are shown with their scores.
// The tasks and their fields come from GET /v1/tasks, so a task the server gains needs no
// edit here. Plain JavaScript with no dependencies, so the page works offline and needs no
// build step.
"use strict";

const $ = (id) => document.getElementById(id);
const BOX_COLOR = "#ff00ff";
const LONG_TEXT = 1000; // a text field that takes more gets a text area (an article)

const state = { file: null, bitmap: null, scale: 1, tasks: new Map() };

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
const fieldId = (task, name) => `${task}-${name}`;

function control(task, f) {
  let input;
  if (f.kind === "choice") {
    input = document.createElement("select");
    input.append(new Option("(default)", ""), ...f.choices.map((c) => new Option(c, c)));
  } else if (f.kind === "text" && f.max_chars > LONG_TEXT) {
    input = document.createElement("textarea");
    input.rows = 5;
  } else {
    input = document.createElement("input");
    input.type = { flag: "checkbox", int: "number" }[f.kind] || "text";
  }
  if (f.kind === "text" && f.max_chars) input.maxLength = f.max_chars;
  input.id = fieldId(task, f.name);
  return input;
}

function fieldLabel(task, f) {
  const label = document.createElement("label");
  const name = f.name.replace(/_/g, " ");
  const title = name[0].toUpperCase() + name.slice(1);
  const hint = document.createElement("small");
  hint.className = "muted";
  hint.textContent = f.help;
  if (f.kind === "flag") {
    label.className = "flag";
    label.append(control(task, f), title, hint);
  } else {
    label.append(f.kind === "texts" ? `${title}, comma-separated` : title, control(task, f),
                 hint);
  }
  return label;
}

// Required fields in view, the others (options, decoding settings) folded away.
function fieldset(info) {
  const set = document.createElement("fieldset");
  set.dataset.task = info.name;
  const optional = info.fields.filter((f) => !f.required);
  set.append(...info.fields.filter((f) => f.required).map((f) => fieldLabel(info.name, f)));
  if (optional.length) {
    const more = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Options";
    more.append(summary, ...optional.map((f) => fieldLabel(info.name, f)));
    set.append(more);
  }
  return set;
}

function showFields() {
  for (const set of $("fields").children) set.hidden = set.dataset.task !== $("task").value;
}

function buildForm(info) {
  const form = new FormData();
  if (state.file && info.image !== "none") form.append("image", state.file, state.file.name);
  for (const f of info.fields) {
    const input = $(fieldId(info.name, f.name));
    if (f.kind === "flag") {
      if (input.checked) form.append(f.name, "true");
      continue;
    }
    const value = input.value.trim();
    if (!value) continue; // left out: the task's (or the server's) default
    if (f.kind === "texts") {
      for (const item of value.split(",")) {
        if (item.trim()) form.append(f.name, item.trim());
      }
    } else {
      form.append(f.name, value);
    }
  }
  return form;
}

async function loadTasks() {
  const response = await fetch("/v1/tasks");
  const body = await response.json();
  for (const info of body.tasks) {
    state.tasks.set(info.name, info);
    $("task").append(new Option(info.summary, info.name));
    $("fields").append(fieldset(info));
  }
  showFields();
}

function clearOutput() {
  for (const id of ["result", "latency", "error"]) $(id).textContent = "";
  $("ranking").hidden = true;
  $("ranking").replaceChildren();
  $("gallery").hidden = true;
  $("gallery").replaceChildren();
}

function showError(message) {
  $("error").textContent = message;
  $("status").textContent = "";
}

// The task's answer (its result_key) as one line; a box is drawn, a ranking listed.
function answerText(info, r) {
  if ("box" in r) {
    return r.box ? `box [${r.box.map((v) => Math.round(v)).join(", ")}]` : "no region found";
  }
  if (Array.isArray(r.images)) return `${r.images.length} images, ranked by ${r.ranked_by}`;
  const value = r[info.result_key];
  let text = typeof value === "string" ? value : JSON.stringify(value ?? "");
  if (info.result_key !== "answer" && typeof r.answer === "string") text += ` (${r.answer})`;
  return text;
}

function show(info, r, roundTrip) {
  if ("box" in r) draw(r.box);
  if (Array.isArray(r.topk)) {
    const list = $("ranking");
    list.replaceChildren(...r.topk.map((c) => {
      const item = document.createElement("li");
      item.textContent = `${c.label} (${c.score === null ? "–" : c.score.toFixed(3)})`;
      return item;
    }));
    list.hidden = false;
  }
  if (Array.isArray(r.images)) {
    // base64 PNGs from the server: shown as data: URLs, which the page's policy allows
    const gallery = $("gallery");
    gallery.replaceChildren(...r.images.map((png, i) => {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = `data:image/png;base64,${png}`;
      img.alt = `image ${i + 1} of ${r.images.length}`;
      const caption = document.createElement("figcaption");
      const score = r.scores[i];
      caption.textContent = `${i + 1}. ${score === null ? "–" : score.toFixed(4)}`;
      figure.append(img, caption);
      return figure;
    }));
    gallery.hidden = false;
  }
  $("result").textContent = answerText(info, r) || "(empty)";
  $("latency").textContent =
    `${r.latency_ms.toFixed(0)} ms on the server (${r.queue_ms.toFixed(0)} ms queued, ` +
    `batch of ${r.batch_size}) · ${roundTrip.toFixed(0)} ms round trip`;
}

async function run(event) {
  event.preventDefault();
  const info = state.tasks.get($("task").value);
  clearOutput();
  if (!info) {
    showError("The server's tasks are not loaded yet.");
    return;
  }
  if (info.image === "required" && !state.file) {
    showError("Pick an image first.");
    return;
  }
  draw(null); // no stale box while the next answer comes
  $("run").disabled = true;
  $("status").textContent = "Running…";
  const started = performance.now();
  try {
    const response = await fetch(info.path, {
      method: "POST", body: buildForm(info), headers: apiHeaders(),
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
    show(info, body, roundTrip);
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
  loadTasks().catch(() => showError("Could not load the server's tasks."));
  loadModel();
}

init();
