// The playground: pick an input, a platform and parameters; see the platform's answer and what it draws.
// Everything the page shows lives in `window.playground` (tests read it from there).
"use strict";

const $ = (id) => document.getElementById(id);
const state = (window.playground = {
  info: null, platform: null, params: {}, input: null, image: null,
  prompts: { box: null, positive: [], negative: [] }, mode: "box",
  answer: null, drawn: [], losses: [], drawnShapes: 0, runs: 0, error: null,
});

async function start() {
  const response = await fetch("/playground/info");
  if (!response.ok) return fail((await response.json()).error || "the model is not ready");
  const info = (state.info = await response.json());
  $("model-name").textContent = `${info.name} ${info.version}`;
  $("model-about").textContent = info.description;
  $("classes").replaceChildren(...info.classes.map((c) => chip(c.name, c.kind)));
  const text = info.input === "text";
  $("image-input").hidden = text;
  $("text-input").hidden = !text;
  $("canvas").hidden = text;
  $("text-view").hidden = !text;
  $("prompt-input").hidden = !info.prompts;
  $("canvas").classList.toggle("prompting", Boolean(info.prompts));
  $(text ? "text-samples" : "samples").replaceChildren(...info.samples.map(sampleButton));
  $("platforms").replaceChildren(...info.platforms.map(platformButton));
  choosePlatform(info.platforms[0]?.name);
  paramForm(info.params);
}

function chip(name, kind) {
  const span = document.createElement("span");
  span.className = "chip";
  span.innerHTML = `<b></b> ${kind}`;
  span.firstChild.textContent = name;
  return span;
}

function platformButton(platform) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "platform";
  button.setAttribute("role", "radio");
  button.dataset.platform = platform.name;
  button.textContent = platform.title;
  button.addEventListener("click", () => { choosePlatform(platform.name); rerun(); });
  return button;
}

function choosePlatform(name) {
  state.platform = name;
  for (const button of $("platforms").children) {
    button.setAttribute("aria-checked", String(button.dataset.platform === name));
  }
}

function sampleButton(name) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = name;
  button.addEventListener("click", async () => {
    const blob = await (await fetch(`/playground/samples/${encodeURIComponent(name)}`)).blob();
    if (state.info.input === "text") {
      $("text").value = await blob.text();
      state.input = { text: $("text").value };
      return run();
    }
    await useImage(blob);
  });
  return button;
}

// --- parameters: a form from the manifest's JSON Schema ----------------------------------------------------

function paramForm(schema) {
  const fields = Object.entries(schema.properties || {}).map(([name, spec]) => field(name, spec));
  $("params").replaceChildren(...fields);
  if (!fields.length) $("params").textContent = "This model takes no parameters.";
  readParams();
}

function field(name, spec) {
  const label = document.createElement("label");
  label.textContent = name;
  let input;
  if (Array.isArray(spec.enum)) {
    input = document.createElement("select");
    for (const value of spec.enum) input.append(new Option(String(value), JSON.stringify(value)));
    if ("default" in spec) input.value = JSON.stringify(spec.default);
  } else if (spec.type === "boolean") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = Boolean(spec.default);
  } else if (spec.type === "number" || spec.type === "integer") {
    input = document.createElement("input");
    input.type = "number";
    input.step = spec.type === "integer" ? "1" : "any";
    if ("minimum" in spec) input.min = spec.minimum;
    if ("maximum" in spec) input.max = spec.maximum;
    if ("default" in spec) input.value = spec.default;
  } else if (spec.type === "string") {
    input = document.createElement("input");
    if ("default" in spec) input.value = spec.default;
  } else {
    input = document.createElement("textarea");
    input.rows = 2;
    if ("default" in spec) input.value = JSON.stringify(spec.default);
  }
  input.name = name;
  input.dataset.kind = Array.isArray(spec.enum) ? "enum" : spec.type || "json";
  input.addEventListener("change", () => { readParams(); rerun(); });
  label.append(input);
  if (spec.description) {
    const about = document.createElement("small");
    about.textContent = spec.description;
    label.append(about);
  }
  return label;
}

function readParams() {
  const params = {};
  for (const input of $("params").querySelectorAll("[name]")) {
    const kind = input.dataset.kind;
    if (kind === "boolean") params[input.name] = input.checked;
    else if (input.value === "") continue;
    else if (kind === "number" || kind === "integer") params[input.name] = Number(input.value);
    else if (kind === "string") params[input.name] = input.value;
    else {
      try { params[input.name] = JSON.parse(input.value); } catch { params[input.name] = input.value; }
    }
  }
  state.params = params;
}

// --- input -------------------------------------------------------------------------------------------------

async function useImage(blob) {
  const url = URL.createObjectURL(blob);
  const image = new Image();
  await new Promise((resolve, reject) => { image.onload = resolve; image.onerror = reject; image.src = url; })
    .catch(() => { throw new Error("this file is not an image the browser can show"); });
  state.image = image;
  const base64 = await new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.readAsDataURL(blob);
  });
  state.input = { image: base64 };
  clearPrompts();
  if (state.info.prompts) return draw([]);  // a model that takes prompts waits for one
  await run();
}

// --- prompts: a box dragged on the image, clicks on it ------------------------------------------------------

function clearPrompts() { state.prompts = { box: null, positive: [], negative: [] }; }

function hasPrompt() { const p = state.prompts; return Boolean(p.box || p.positive.length || p.negative.length); }

function imagePoint(event) {  // the event's position in the image's pixels
  const canvas = $("canvas");
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.width / rect.width, (event.clientY - rect.top) * canvas.height / rect.height];
}

let dragFrom = null;
$("canvas").addEventListener("pointerdown", (event) => {
  if (!state.info?.prompts || !state.image) return;
  dragFrom = imagePoint(event);
});
$("canvas").addEventListener("pointerup", (event) => {
  if (!dragFrom) return;
  const [x0, y0] = dragFrom, [x1, y1] = imagePoint(event);
  dragFrom = null;
  if (state.mode === "box" && Math.abs(x1 - x0) > 2 && Math.abs(y1 - y0) > 2) {
    state.prompts.box = [Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)];
  } else if (state.mode !== "box") {
    state.prompts[state.mode].push([x1, y1]);
  } else return;
  run();
});
for (const button of $("prompt-modes").querySelectorAll("[data-mode]")) {
  button.addEventListener("click", () => {
    state.mode = button.dataset.mode;
    for (const other of $("prompt-modes").querySelectorAll("[data-mode]")) {
      other.setAttribute("aria-checked", String(other === button));
    }
  });
}
$("clear-prompts").addEventListener("click", () => { clearPrompts(); draw([]); });

function drawPrompts(g, scale) {
  const { box, positive, negative } = state.prompts;
  g.save();
  g.lineWidth = 2 * scale;
  if (box) { g.setLineDash([6 * scale, 4 * scale]); g.strokeStyle = "white"; g.strokeRect(...box); }
  for (const [points, fill] of [[positive, "#1a9e3c"], [negative, "#c62828"]]) {
    for (const [x, y] of points) {
      g.beginPath(); g.arc(x, y, 5 * scale, 0, 2 * Math.PI);
      g.fillStyle = fill; g.fill(); g.strokeStyle = "white"; g.setLineDash([]); g.stroke();
    }
  }
  g.restore();
}

$("file").addEventListener("change", (event) => {
  if (event.target.files[0]) useImage(event.target.files[0]).catch((error) => fail(error.message));
});
for (const type of ["dragenter", "dragover"]) {
  $("drop").addEventListener(type, (event) => { event.preventDefault(); $("drop").classList.add("over"); });
}
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) useImage(file).catch((error) => fail(error.message));
});
$("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  if (state.info?.input === "text") state.input = { text: $("text").value };
  run();
});
$("copy").addEventListener("click", async () => {
  const text = $("answer").textContent;
  try { await navigator.clipboard.writeText(text); } catch {
    const range = document.createRange();
    range.selectNodeContents($("answer"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  $("status").textContent = "Copied the answer.";
});

// --- running -----------------------------------------------------------------------------------------------

function rerun() { if (state.input && (!state.info?.prompts || hasPrompt())) run(); }

async function run() {
  if (!state.input) return fail("Pick an image or a text first.");
  readParams();
  $("status").className = "";
  $("status").textContent = "Running…";
  const body = { platform: state.platform, params: state.params, ...state.input };
  if (state.info.prompts) body.prompts = state.prompts;
  const response = await fetch("/playground/run", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const found = await response.json();
  if (!response.ok) return fail(found.error || `HTTP ${response.status}`);
  Object.assign(state, { answer: found.answer, drawn: found.drawn, losses: found.losses, error: null });
  state.runs += 1;
  show(found);
  $("status").textContent = `${found.drawn.length} prediction(s) on ${state.platform}, of ${found.served} served.`;
}

function fail(message) {
  state.error = message;
  $("status").className = "error";
  $("status").textContent = message;
}

function show(found) {
  $("answer").textContent = JSON.stringify(found.answer, null, 2);
  const listed = found.drawn.filter((p) => p.type === "tag" || p.type === "classification");
  $("listed").innerHTML = listed.length ? "<h2>Classifications</h2><ul></ul>" : "";
  for (const p of listed) {
    const item = document.createElement("li");
    const answer = p.type === "tag" ? "" : `: ${[].concat(p.answer).join(", ")}`;
    item.textContent = `${p.label}${answer} (${p.confidence.toFixed(2)})`;
    $("listed").querySelector("ul").append(item);
  }
  $("losses").innerHTML = found.losses.length ? "<h2>Dropped or approximated on this platform</h2><ul></ul>" : "";
  for (const line of found.losses) {
    const item = document.createElement("li");
    item.textContent = line;
    $("losses").querySelector("ul").append(item);
  }
  if (state.info.input === "text") showText(found.text, found.drawn);
  else draw(found.drawn);
}

// --- drawing -----------------------------------------------------------------------------------------------

function colour(label) {
  let hash = 0;
  for (const char of label) hash = (hash * 31 + char.charCodeAt(0)) % 360;
  return `hsl(${hash}, 85%, 50%)`;
}

function draw(predictions) {
  const canvas = $("canvas");
  const image = state.image;
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const g = canvas.getContext("2d");
  g.drawImage(image, 0, 0);
  const scale = canvas.width / (canvas.getBoundingClientRect().width || canvas.width); // image px per screen px
  g.lineWidth = 2 * scale;
  g.font = `${12 * scale}px system-ui, sans-serif`;
  let shapes = 0;
  for (const p of predictions) {
    const where = shape(g, p, colour(p.label), scale);
    if (!where) continue;
    shapes += 1;
    const caption = `${p.label} ${p.confidence.toFixed(2)}`;
    g.fillStyle = colour(p.label);
    g.fillRect(where[0], where[1] - 14 * scale, g.measureText(caption).width + 6 * scale, 14 * scale);
    g.fillStyle = "white";
    g.fillText(caption, where[0] + 3 * scale, where[1] - 3 * scale);
  }
  if (state.info.prompts) drawPrompts(g, scale);
  state.drawnShapes = shapes;
  canvas.dataset.shapes = String(shapes);
}

function rings(g, parts) {
  g.beginPath();
  for (const part of parts) {
    for (const ring of part) {
      ring.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
      g.closePath();
    }
  }
}

// Draws one prediction; returns where its caption goes ([x, y]), or null for what has no geometry.
function shape(g, p, stroke, scale) {
  g.strokeStyle = stroke;
  g.fillStyle = stroke.replace("50%)", "50%, 0.25)").replace("hsl", "hsla");
  const dot = (x, y) => { g.beginPath(); g.arc(x, y, 3 * scale, 0, 2 * Math.PI); g.fill(); g.stroke(); };
  switch (p.type) {
    case "box":
      g.strokeRect(p.x, p.y, p.w, p.h);
      return [p.x, p.y];
    case "rotated_box":
    case "ellipse": {
      g.save();
      g.translate(p.cx, p.cy);
      g.rotate((p.angle * Math.PI) / 180);
      g.beginPath();
      if (p.type === "ellipse") g.ellipse(0, 0, p.rx, p.ry, 0, 0, 2 * Math.PI);
      else g.rect(-p.w / 2, -p.h / 2, p.w, p.h);
      g.stroke();
      g.restore();
      return [p.cx, p.cy];
    }
    case "polygon":
    case "mask": {
      if (!p.parts.length) return null;
      rings(g, p.parts);
      g.fill("evenodd");
      g.stroke();
      const [x, y] = p.parts[0][0][0];
      return [x, y];
    }
    case "point":
      dot(p.x, p.y);
      return [p.x, p.y];
    case "line":
      g.beginPath();
      p.points.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
      g.stroke();
      return p.points[0];
    case "skeleton":
      for (const node of p.nodes) dot(node.x, node.y);
      return p.nodes.length ? [p.nodes[0].x, p.nodes[0].y] : null;
    case "cuboid": {
      const { front: f, back: b } = p;
      g.strokeRect(f.x, f.y, f.w, f.h);
      g.strokeRect(b.x, b.y, b.w, b.h);
      g.beginPath();
      for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
        g.moveTo(f.x + dx * f.w, f.y + dy * f.h);
        g.lineTo(b.x + dx * b.w, b.y + dy * b.h);
      }
      g.stroke();
      return [f.x, f.y];
    }
    default:
      return null; // tags and classifications are listed; vectors have no position
  }
}

function showText(text, predictions) {
  const view = $("text-view");
  view.replaceChildren();
  const spans = predictions.filter((p) => p.type === "span").sort((a, b) => a.start - b.start);
  let at = 0;
  for (const span of spans) {
    if (span.start < at) continue;
    view.append(text.slice(at, span.start));
    const mark = document.createElement("mark");
    mark.style.background = colour(span.label).replace("50%)", "50%, 0.3)").replace("hsl", "hsla");
    mark.textContent = text.slice(span.start, span.end);
    const label = document.createElement("small");
    label.textContent = span.label;
    mark.append(label);
    view.append(mark);
    at = span.end;
  }
  view.append(text.slice(at));
  state.drawnShapes = spans.length;
}

start().catch((error) => fail(String(error)));
