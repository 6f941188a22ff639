// t2m serve: the page. It uses only the JSON API (docs/serve.md) and loads nothing from the network.
"use strict";

const state = { health: null };

function $(root, selector) { return root.querySelector(selector); }

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// An RDKit SVG (server-made) shown as an image: no script or style of it reaches the page.
function drawing(svg, alt) {
  if (!svg) return element("div", "nodrawing", "no drawing: not a molecule RDKit reads");
  const img = document.createElement("img");
  img.alt = alt;
  img.className = "molecule";
  img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg);
  return img;
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("the server does not answer (is t2m serve still running?)");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `the server answered ${response.status} ${response.statusText}`);
  }
  return body;
}

function showError(pane, message) {
  const box = $(pane, ".error");
  box.textContent = message || "";
  box.hidden = !message;
}

function fillSystems(select, task) {
  const info = state.health.tasks[task];
  select.innerHTML = "";
  for (const name of info.systems) {
    const option = element("option", null, name + (name === info.default_system ? " (default)" : ""));
    option.value = name;
    option.title = state.health.systems[name];
    option.selected = name === info.default_system;
    select.appendChild(option);
  }
}

function updateHint(form, task) {
  const system = form.elements.system.value;
  const beams = form.elements.num_beams;
  beams.disabled = system === "retrieval";
  const hint = $(form, ".hint");
  if (hint) {
    hint.textContent = system === "retrieval"
      ? "Retrieval answers with a training pair's " + (task === "text2mol" ? "molecule" : "caption")
        + " (no model); it lists the 5 best-ranked pairs, beams do not apply."
      : state.health.systems[system];
  }
}

function neighbourCard(n, task, rank) {
  const li = element("li");
  li.appendChild(element("div", "similarity", `#${rank} · similarity ${n.similarity.toFixed(3)}`));
  li.appendChild(drawing(n.drawing, "neighbour molecule"));
  const smiles = task === "mol2text" ? n.source : n.target;
  const text = task === "mol2text" ? n.target : n.source;
  li.appendChild(element("div", "smiles", smiles));
  li.appendChild(element("div", "text", text));
  return li;
}

function showText2mol(pane, out, answer) {
  $(pane, ".main-drawing").replaceChildren(drawing(out.drawing, "the molecule"));
  $(pane, ".output").textContent = out.output || "(no output)";
  const validity = $(pane, ".validity");
  validity.textContent = out.valid ? "valid SMILES (RDKit reads it)" : "not a valid SMILES";
  validity.className = "validity " + (out.valid ? "valid" : "invalid");
  const list = $(pane, ".candidates");
  list.replaceChildren();
  out.candidates.forEach((smiles, i) => {
    const li = element("li", smiles === out.output ? "chosen" : "");
    li.appendChild(element("div", "similarity", "#" + (i + 1)));
    li.appendChild(drawing(out.candidate_drawings ? out.candidate_drawings[i] : null, "candidate " + (i + 1)));
    li.appendChild(element("div", "smiles", smiles));
    list.appendChild(li);
  });
}

function showMol2text(pane, out) {
  $(pane, ".main-drawing").replaceChildren(drawing(out.drawing, "the input molecule"));
  $(pane, ".output").textContent = out.output || "(no output)";
  const list = $(pane, ".candidates");
  list.replaceChildren();
  out.candidates.forEach((text) => list.appendChild(element("li", text === out.output ? "chosen" : "", text)));
}

function showAnswer(pane, task, answer) {
  const out = answer.outputs[0];
  (task === "text2mol" ? showText2mol : showMol2text)(pane, out, answer);
  const flags = $(pane, ".flags");
  flags.replaceChildren(...out.flags.map((f) => element("li", null, f)));
  $(pane, ".candidates-note").textContent = answer.system === "retrieval"
    ? "(the best-ranked training pairs)" : `(the ${answer.num_beams} beam${answer.num_beams > 1 ? "s" : ""}, best first)`;
  $(pane, ".timing").textContent = `${answer.system}` + (answer.system === "retrieval" ? "" : `, ${answer.num_beams} beam(s)`)
    + ` · ${(answer.seconds * 1000).toFixed(0)} ms`;
  $(pane, ".neighbours").replaceChildren(...out.neighbours.map((n, i) => neighbourCard(n, task, i + 1)));
  $(pane, ".result").hidden = false;
  pane.dataset.state = "done";
}

function setupPane(pane) {
  const task = pane.dataset.task;
  const form = $(pane, "form");
  fillSystems(form.elements.system, task);
  form.elements.num_beams.max = state.health.limits.max_beams;
  updateHint(form, task);
  form.elements.system.addEventListener("change", () => updateHint(form, task));
  $(form, ".example").addEventListener("click", (event) => {
    form.elements.input.value = event.target.dataset.example;
    form.requestSubmit();
  });
  form.elements.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey || form.elements.input.tagName === "INPUT")) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $(form, "button[type=submit]");
    const system = form.elements.system.value;
    const request = { task, inputs: [form.elements.input.value], system, draw: true };
    if (system !== "retrieval") request.num_beams = Number(form.elements.num_beams.value);
    showError(pane, "");
    pane.dataset.state = "busy";
    button.disabled = true;
    try {
      const answer = await api("/api/translate", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
      });
      showAnswer(pane, task, answer);
    } catch (err) {
      $(pane, ".result").hidden = true;
      showError(pane, err.message);
      pane.dataset.state = "error";
    } finally {
      button.disabled = false;
    }
  });
}

function setupFiles(pane) {
  const form = $(pane, "form");
  const refresh = () => {
    fillSystems(form.elements.system, form.elements.task.value);
    form.elements.num_beams.disabled = form.elements.system.value === "retrieval";
  };
  form.elements.task.addEventListener("change", refresh);
  form.elements.system.addEventListener("change",
    () => { form.elements.num_beams.disabled = form.elements.system.value === "retrieval"; });
  form.elements.num_beams.max = state.health.limits.max_beams;
  refresh();
  const box = $(pane, "#file-progress");
  const bar = $(box, "progress");
  const status = $(box, ".status");
  const link = $(box, ".download");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(pane, "");
    const file = form.elements.file.files[0];
    if (!file) { showError(pane, "choose a file first"); return; }
    const limit = state.health.limits.max_upload_bytes;
    if (file.size > limit) {
      showError(pane, `a file of ${file.size.toLocaleString("en")} bytes; the limit is ${limit.toLocaleString("en")} (t2m serve --max-upload-bytes)`);
      return;
    }
    const query = new URLSearchParams({ task: form.elements.task.value, system: form.elements.system.value,
      format: form.elements.format.value, name: file.name });
    if (form.elements.system.value !== "retrieval") query.set("num_beams", form.elements.num_beams.value);
    link.hidden = true;
    box.hidden = false;
    bar.value = 0;
    status.textContent = "uploading…";
    pane.dataset.state = "busy";
    try {
      let job = await api("/api/files?" + query, { method: "POST", body: file,
        headers: { "Content-Type": "application/octet-stream" } });
      while (job.state === "running") {
        bar.max = job.rows;
        bar.value = job.done;
        status.textContent = `${job.done} of ${job.rows} rows (${job.format})`;
        await new Promise((resolve) => setTimeout(resolve, 400));
        job = await api("/api/files/" + job.id);
      }
      if (job.state === "failed") throw new Error(job.error);
      bar.max = job.rows;
      bar.value = job.rows;
      status.textContent = `${job.rows} rows translated in ${job.seconds} s` + (job.flagged ? `, ${job.flagged} flagged` : "");
      link.href = job.download;
      link.download = job.download_name;
      link.textContent = "Download " + job.download_name;
      link.hidden = false;
      pane.dataset.state = "done";
    } catch (err) {
      box.hidden = true;
      showError(pane, err.message);
      pane.dataset.state = "error";
    }
  });
}

async function start() {
  try {
    state.health = await api("/api/health");
  } catch (err) {
    $(document, "#model-info").textContent = "The server did not describe its model: " + err.message;
    return;
  }
  const h = state.health;
  const db = h.database ? `, retrieving from ${h.database.pairs.toLocaleString("en")} training pairs` : "";
  $(document, "#model-info").textContent = `Model: ${h.model.shipped ? "the model shipped with t2m" : h.model.path}${db}`
    + ` · t2m ${h.versions.t2m}, RDKit ${h.versions.rdkit}, torch ${h.versions.torch}`;
  for (const pane of document.querySelectorAll(".pane[data-task]")) setupPane(pane);
  setupFiles($(document, "#pane-file"));
  document.body.dataset.ready = "true";
}

start();
