// micrornn backprop stepper. TRACE (written by micrornn.viz.html) holds every node's value and final
// gradient, and the events: forward (a node computes its value) then backward (a node, whose
// gradient is now complete, sends one contribution to each of its inputs). The page state after k
// events is recomputed from scratch on every move, so "back" is exact.
"use strict";
(function () {
  const T = TRACE, nodes = T.nodes, events = T.events, E = events.length;
  let k = 0;  // number of events applied
  const expected = {};  // how many contributions each node's gradient is the sum of
  for (const e of events) for (const send of e.sends) expected[send.to] = (expected[send.to] || 0) + 1;

  // ---- numbers and arrays -------------------------------------------------------------------
  const fmt = (v) => Number(v).toPrecision(6);
  function rows(value, shape) {  // any array as rows of numbers (leading axes flattened)
    const flat = [].concat(value).flat(Infinity);
    const width = shape.length ? shape[shape.length - 1] : 1;
    const out = [];
    for (let i = 0; i < flat.length; i += width) out.push(flat.slice(i, i + width));
    return out;
  }
  function matrixText(value, shape) {
    return rows(value, shape).map((r) => "[" + r.map(fmt).join(", ") + "]").join("\n");
  }
  function addInto(acc, value) {
    const flat = [].concat(value).flat(Infinity);
    if (!acc) return flat.slice();
    return acc.map((a, i) => a + flat[i]);
  }

  // ---- the SVG: node and edge elements by DOT name --------------------------------------------
  const svgNode = {}, svgEdge = {};
  document.querySelectorAll("#graph g.node").forEach((g) => { svgNode[g.querySelector("title").textContent] = g; });
  document.querySelectorAll("#graph g.edge").forEach((g) => { svgEdge[g.querySelector("title").textContent] = g; });
  const edgeInto = (from, to) => svgEdge[from + "->" + to];  // drawn in the forward direction

  // ---- state after k events -------------------------------------------------------------------
  function stateAt(k) {
    const s = { computed: new Set(), grad: {}, done: new Set(), received: {}, current: null, event: null };
    for (const [id, n] of Object.entries(nodes)) if (n.kind !== "op") s.computed.add(id);
    for (let i = 0; i < k; i++) {
      const e = events[i];
      if (e.phase === "forward") { s.computed.add(e.node); continue; }
      if (!(e.node in s.grad)) { s.grad[e.node] = [].concat(nodes[e.node].grad).flat(Infinity); s.done.add(e.node); }  // the root: dL/dL = 1
      for (const send of e.sends) {
        s.grad[send.to] = addInto(s.grad[send.to], send.value);
        const got = (s.received[send.to] = s.received[send.to] || []);
        got.push({ from: e.node, value: send.value });
        if (got.length === expected[send.to]) s.done.add(send.to);  // every path has arrived
      }
    }
    if (k > 0) { s.event = events[k - 1]; s.current = s.event.node; }
    return s;
  }

  // ---- drawing the state ----------------------------------------------------------------------
  function paint() {
    const s = stateAt(k);
    for (const [id, g] of Object.entries(svgNode)) {
      if (!(id in nodes)) continue;
      g.classList.toggle("computed", s.computed.has(id) && !(id in s.grad));
      g.classList.toggle("grad-partial", id in s.grad && !s.done.has(id));
      g.classList.toggle("grad-done", s.done.has(id));
      g.classList.toggle("current", id === s.current);
    }
    Object.values(svgEdge).forEach((g) => g.classList.remove("active", "path-a", "path-b"));
    if (s.event && s.event.phase === "forward") {
      Object.keys(svgEdge).filter((t) => t.endsWith("->" + s.current)).forEach((t) => svgEdge[t].classList.add("active"));
    } else if (s.event) {
      s.event.sends.forEach((send) => { const g = edgeInto(send.to, s.current); if (g) g.classList.add("active"); });
    }
    paintFocus(s);
    paintStatus(s);
    paintCurrent(s);
    paintTable(s);
  }

  function paintStatus(s) {
    const el = document.getElementById("status");
    if (!s.event) { el.textContent = `ready: ${E} steps (${events.filter((e) => e.phase === "forward").length} forward, then backward)`; return; }
    const n = nodes[s.current], phaseEvents = events.filter((e) => e.phase === s.event.phase);
    el.textContent = `${s.event.phase} ${phaseEvents.indexOf(s.event) + 1}/${phaseEvents.length} · ${s.event.group.split(": ")[1]} · ${n.label}`;
    el.dataset.k = String(k);
  }

  function gradCell(el, s, id) {
    const n = nodes[id];
    el.classList.remove("partial", "pending");
    if (n.grad === null) {  // the engine gives this node no gradient at all: say so from the start
      el.textContent = n.kind === "input" ? "no gradient: not a parameter" : "no gradient";
      el.classList.add("pending");
      return;
    }
    if (!(id in s.grad)) { el.textContent = "not yet"; el.classList.add("pending"); return; }
    el.textContent = matrixText(s.grad[id], n.shape);
    if (!s.done.has(id)) el.classList.add("partial");
  }

  function paintCurrent(s) {
    const box = document.getElementById("current");
    if (!s.current) { box.hidden = true; return; }
    box.hidden = false;
    const n = nodes[s.current];
    box.querySelector(".name").textContent = `${n.label}  ${JSON.stringify(n.shape).replace("[", "(").replace("]", ")")}` +
      (n.layer === null ? "" : `  · layer ${n.layer}` + (n.step === null ? ", all steps" : `, step ${n.step}`));
    box.querySelector(".value").textContent = matrixText(n.value, n.shape);
    gradCell(box.querySelector(".grad"), s, s.current);
    const sends = box.querySelector(".sends");
    sends.textContent = "";
    if (s.event.phase === "backward") {
      for (const send of s.event.sends) {
        const div = document.createElement("div");
        div.className = "matrix";
        div.textContent = `→ ${nodes[send.to].label}:\n${matrixText(send.value, nodes[send.to].shape)}`;
        sends.appendChild(div);
      }
    }
  }

  function paintFocus(s) {
    const box = document.getElementById("paths");
    if (!T.focus) { box.hidden = true; document.getElementById("two-paths-text").hidden = true; return; }
    const f = T.focus, got = s.received[f.node] || [], terms = box.querySelector(".terms");
    terms.textContent = "";
    f.from.forEach((src, i) => {
      const arrived = got.find((r) => r.from === src);
      const div = document.createElement("div");
      div.className = (i === 0 ? "term-a" : "term-b");
      div.dataset.from = src;
      div.innerHTML = `<b>${i ? "+ " : ""}path ${i + 1}</b>: ${f.labels[i]}<div class="matrix"></div>`;
      const m = div.querySelector(".matrix");
      if (arrived) m.textContent = matrixText(arrived.value, nodes[f.node].shape); else { m.textContent = "not yet"; m.classList.add("pending"); }
      terms.appendChild(div);
      const edge = edgeInto(f.node, src);
      if (edge && arrived) edge.classList.add(i === 0 ? "path-a" : "path-b");
    });
    const total = document.createElement("div");
    total.className = "term-sum";
    total.innerHTML = `<b>= ∂L/∂h${f.step}</b><div class="matrix total"></div>`;
    const m = total.querySelector(".matrix");
    if (f.from.every((src) => got.find((r) => r.from === src))) m.textContent = matrixText(s.grad[f.node], nodes[f.node].shape);
    else { m.textContent = "not yet: both paths must arrive"; m.classList.add("pending"); }
    terms.appendChild(total);
  }

  function paintTable(s) {
    for (const tr of document.querySelectorAll("table#nodes tbody tr")) {
      const id = tr.dataset.node;
      tr.classList.toggle("current", id === s.current);
      const value = tr.querySelector(".value");
      if (s.computed.has(id)) { value.textContent = matrixText(nodes[id].value, nodes[id].shape); value.classList.remove("pending"); }
      else { value.textContent = "not yet"; value.classList.add("pending"); }
      gradCell(tr.querySelector(".grad"), s, id);
    }
  }

  // ---- controls -------------------------------------------------------------------------------
  function go(to) { k = Math.max(0, Math.min(E, to)); paint(); }
  function nextStep() {  // run every event of the next time-step block
    if (k >= E) return;
    const group = events[k].group;
    let j = k;
    while (j < E && events[j].group === group) j++;
    go(j);
  }
  function backStep() {
    if (k <= 0) return;
    const group = events[k - 1].group;
    let j = k - 1;
    while (j > 0 && events[j - 1].group === group) j--;
    go(j);
  }
  const firstBackward = events.findIndex((e) => e.phase === "backward");
  const on = (id, f) => document.getElementById(id).addEventListener("click", f);
  on("reset", () => go(0));
  on("back-step", backStep);
  on("back", () => go(k - 1));
  on("next", () => go(k + 1));
  on("next-step", nextStep);
  on("to-backward", () => go(firstBackward + 1));  // lands on the first backward step, already taken
  on("end", () => go(E));
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowRight") { ev.shiftKey ? nextStep() : go(k + 1); ev.preventDefault(); }
    if (ev.key === "ArrowLeft") { ev.shiftKey ? backStep() : go(k - 1); ev.preventDefault(); }
  });
  if (T.focus) { const g = svgNode[T.focus.node]; if (g) g.classList.add("focus"); }
  window.stepper = { go, get k() { return k; }, events: E };
  paint();
})();
