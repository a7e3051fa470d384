// jaxart's page: plain JavaScript over the JSON API of jaxart/serve/app.py (no framework, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { content: { example: "content.png" }, style: { pretrained: 0 }, job: null, shownPreview: 0 };

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}

function say(text) { $("message").textContent = text; }

function pick(container, img) {
  for (const other of container.querySelectorAll("img")) other.classList.remove("selected");
  for (const group of ["style-paintings", "style-pretrained"]) {
    if (container.id.startsWith("style")) for (const other of $(group).querySelectorAll("img")) other.classList.remove("selected");
  }
  if (img) img.classList.add("selected");
}

function thumb(src, title, onClick) {
  const img = document.createElement("img");
  img.src = src;
  img.title = title;
  img.alt = title;
  img.addEventListener("click", () => onClick(img));
  return img;
}

function chooseContent(ref, src, img) {
  state.content = ref;
  $("content-shown").src = src;
  pick($("content-examples"), img);
}

function chooseStyle(ref, text, img, container) {
  state.style = ref;
  $("style-chosen").textContent = text;
  if (container) pick(container, img);
}

function uploadFile(file) {
  return api(`/api/uploads?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
}

async function setUp() {
  const info = await api("/api/info");
  for (const name of info.examples) {
    const src = `/api/examples/${name}`;
    const img = thumb(src, name, (el) => chooseContent({ example: name }, src, el));
    img.dataset.example = name;
    $("content-examples").appendChild(img);
    if (name !== "content.png") {
      const painting = thumb(src, name, (el) => chooseStyle({ example: name }, `painting: ${name}`, el, $("style-paintings")));
      painting.dataset.example = name;
      $("style-paintings").appendChild(painting);
    }
  }
  chooseContent({ example: "content.png" }, "/api/examples/content.png", $("content-examples").firstChild);
  for (let i = 0; i < info.styles; i++) {
    const img = thumb(`/api/styles/${i}.png`, `pretrained style ${i}`, (el) =>
      chooseStyle({ pretrained: i }, `pretrained style ${i}`, el, $("style-pretrained")));
    img.loading = "lazy";
    $("style-pretrained").appendChild(img);
  }
  chooseStyle({ pretrained: 0 }, "pretrained style 0", $("style-pretrained").firstChild, $("style-pretrained"));
  if (info.trained.length) {
    $("style-trained").innerHTML = '<option value="">-</option>';
    for (const name of info.trained) $("style-trained").add(new Option(name, name));
  }
  for (const name of info.presets) $("preset").add(new Option(name, name, name === info.defaults.preset, name === info.defaults.preset));
  $("size").max = info.max_size;
  fillRuns(info.runs);
}

function onUpload(field, kept) {
  $(field).addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    say("");
    try {
      kept(await uploadFile(file));
    } catch (error) {
      say(error.message);
    }
    event.target.value = "";
  });
}

onUpload("content-file", (kept) => chooseContent({ upload: kept.id }, `/api/uploads/${kept.id}`, null));
onUpload("style-file", (kept) => {
  chooseStyle({ upload: kept.id }, `painting: ${kept.name} (${kept.width}x${kept.height})`, null, null);
  pick($("style-paintings"), null);
});

$("style-trained").addEventListener("change", (event) => {
  if (event.target.value) chooseStyle({ trained: event.target.value, index: 0 }, `trained: ${event.target.value}`, null, null);
});

function method() { return document.querySelector("input[name=method]:checked").value; }

function request() {
  const body = {
    method: method(),
    content: state.content,
    style: state.style,
    size: Number($("size").value),
    steps: Number($("steps").value),
    preset: $("preset").value,
    strength: Number($("strength").value),
    original_colors: $("original-colors").checked,
  };
  if ($("style-weight").value.trim()) body.style_weight = Number($("style-weight").value);
  return body;
}

$("run").addEventListener("click", async () => {
  say("");
  try {
    const job = await api("/api/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request()) });
    follow(job);
  } catch (error) {
    say(error.message);
  }
});

$("cancel").addEventListener("click", async () => {
  if (state.job) await api(`/api/jobs/${state.job}/cancel`, { method: "POST" }).catch((error) => say(error.message));
});

function seconds(s) {
  if (s === null || s === undefined) return "";
  return s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;
}

function follow(job) {
  state.job = job.id;
  state.shownPreview = 0;
  $("cancel").disabled = false;
  $("preview").removeAttribute("src");
  const poll = async () => {
    let now;
    try {
      now = await api(`/api/jobs/${job.id}`);
    } catch (error) {
      say(error.message);
      return;
    }
    const eta = now.eta !== null ? `, about ${seconds(now.eta)} left` : "";
    const place = now.state === "queued" ? " (waiting for the device)" : "";
    $("status").textContent = `${now.label}: ${now.state}${place}, step ${now.step}/${now.steps}${eta}`;
    $("status").dataset.state = now.state;
    if (now.preview > state.shownPreview) {
      state.shownPreview = now.preview;
      $("preview").src = `/api/jobs/${now.id}/preview.png?v=${now.preview}`;
      $("preview").dataset.version = String(now.preview);
    }
    drawCurve($("losses"), { loss: now.losses });
    if (now.state === "queued" || now.state === "running") {
      setTimeout(poll, 250);
      return;
    }
    $("cancel").disabled = true;
    if (now.state === "failed") say(now.message);
    if (now.state === "done") addResult(now);
  };
  poll();
}

function addResult(job) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.src = `/api/jobs/${job.id}/result.png`;
  img.alt = job.label;
  const link = document.createElement("a");
  link.href = img.src;
  link.download = `jaxart-${job.kind}-${job.id.slice(0, 8)}.png`;
  link.textContent = "download PNG";
  link.className = "download";
  const caption = document.createElement("figcaption");
  caption.append(job.label, document.createElement("br"), link);
  figure.append(img, caption);
  $("results").prepend(figure);
}

function drawCurve(canvas, series) {
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const colours = ["#1f3b5c", "#e07b00", "#2a9d8f", "#b00020"];
  let k = 0;
  for (const [name, values] of Object.entries(series)) {
    const points = values.filter((v) => v !== null && Number.isFinite(v));
    if (points.length < 2) continue;
    const logs = points.map((v) => Math.log10(Math.max(v, 1e-12)));
    const low = Math.min(...logs), high = Math.max(...logs) + 1e-9;
    context.strokeStyle = colours[k % colours.length];
    context.beginPath();
    logs.forEach((v, i) => {
      const x = (i / (logs.length - 1)) * (canvas.width - 10) + 5;
      const y = canvas.height - 5 - ((v - low) / (high - low)) * (canvas.height - 20);
      if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
    context.fillStyle = context.strokeStyle;
    context.fillText(`${name} (log)`, 8, 12 + 12 * k);
    k++;
  }
}

async function refreshQueue() {
  try {
    const jobs = await api("/api/jobs");
    const list = $("queue");
    list.innerHTML = "";
    for (const job of jobs.filter((j) => j.state === "queued" || j.state === "running")) {
      const item = document.createElement("li");
      item.textContent = `${job.label}: ${job.state}`;
      list.appendChild(item);
    }
  } catch (error) { /* the next refresh tries again */ }
  setTimeout(refreshQueue, 1000);
}

// --- GAN ------------------------------------------------------------------------------------------

function fillRuns(names) {
  const select = $("runs");
  const chosen = select.value;
  select.innerHTML = names.length ? "" : '<option value="">none yet</option>';
  for (const name of names) select.add(new Option(name, name, false, name === chosen));
}

async function refreshRun() {
  const name = $("runs").value;
  if (name && !$("page-gan").hidden) {
    try {
      const run = await api(`/api/runs/${encodeURIComponent(name)}`);
      if (run.samples && $("samples").dataset.shown !== run.samples + run.steps.length) {
        $("samples").src = `/api/runs/${encodeURIComponent(name)}/samples.png?v=${run.steps.length}`;
        $("samples").dataset.shown = run.samples + run.steps.length;
      }
      const losses = {};
      for (const key of ["d_loss", "g_loss"]) if (run.metrics[key]) losses[key] = run.metrics[key];
      drawCurve($("gan-losses"), losses);
      const body = $("evals").querySelector("tbody");
      body.innerHTML = "";
      for (const record of run.evaluations) {
        const row = body.insertRow();
        row.insertCell().textContent = record.step;
        const scores = Object.entries(record).filter(([k, v]) => k !== "step" && typeof v === "number");
        row.insertCell().textContent = scores.map(([k, v]) => `${k} ${v.toPrecision(4)}`).join(", ");
      }
    } catch (error) {
      $("gan-message").textContent = error.message;
    }
  }
  setTimeout(refreshRun, 2000);
}

$("start-run").addEventListener("click", async () => {
  $("gan-message").textContent = "";
  const body = { name: $("run-name").value, model: $("run-model").value, steps: Number($("run-steps").value) };
  try {
    const job = await api("/api/runs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("gan-message").textContent = `started: ${job.label}`;
    const watch = async () => {
      const now = await api(`/api/jobs/${job.id}`);
      fillRuns(await api("/api/runs"));
      if (!$("runs").value && body.name) $("runs").value = body.name;
      if (now.state === "failed") $("gan-message").textContent = now.message;
      else if (now.state === "done") $("gan-message").textContent = `finished: ${job.label}`;
      else setTimeout(watch, 1000);
    };
    watch();
  } catch (error) {
    $("gan-message").textContent = error.message;
  }
});

for (const [tab, page] of [["tab-style", "page-style"], ["tab-gan", "page-gan"]]) {
  $(tab).addEventListener("click", async () => {
    for (const other of ["page-style", "page-gan"]) $(other).hidden = other !== page;
    for (const other of ["tab-style", "tab-gan"]) $(other).classList.toggle("active", other === tab);
    if (page === "page-gan") fillRuns(await api("/api/runs"));
  });
}

setUp().catch((error) => say(error.message));
refreshQueue();
refreshRun();
