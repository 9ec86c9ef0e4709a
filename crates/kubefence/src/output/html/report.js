// kubefence report: zoom, pan, filter and selection on the inline SVG.
// Our own code, no library. The page reads its state from the DOM the
// report wrote; `#filter=TEXT` in the address preselects a filter.
"use strict";
(function () {
  const errors = [];
  window.addEventListener("error", (e) => {
    errors.push(String(e.message));
    document.body.dataset.errors = errors.join("\n");
  });

  const svg = document.getElementById("graph-svg");
  const nodes = Array.from(document.querySelectorAll("g.node"));
  const edges = Array.from(document.querySelectorAll("path.edge"));
  const labels = new Map();
  for (const l of document.querySelectorAll("text.elabel")) labels.set(l.dataset.edge, l);
  const details = document.getElementById("details");
  const filterBox = document.getElementById("filter");
  const hideExternal = document.getElementById("hide-external");
  const showRemoved = document.getElementById("show-removed");
  const labelBox = document.getElementById("labels");
  const shown = document.getElementById("shown");

  // The view box: zoom around a point, pan by dragging.
  const full = { w: Number(svg.dataset.width), h: Number(svg.dataset.height) };
  let view = { x: 0, y: 0, w: full.w, h: full.h };
  function apply() {
    svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  }
  function zoom(factor, cx, cy) {
    const w = Math.min(Math.max(view.w * factor, 50), full.w * 4);
    const h = view.h * (w / view.w);
    view = { x: cx - (cx - view.x) * (w / view.w), y: cy - (cy - view.y) * (h / view.h), w, h };
    apply();
  }
  function toGraph(evt) {
    const r = svg.getBoundingClientRect();
    const scale = Math.max(view.w / r.width, view.h / r.height);
    const offX = (r.width * scale - view.w) / 2, offY = (r.height * scale - view.h) / 2;
    return { x: view.x - offX + (evt.clientX - r.left) * scale, y: view.y - offY + (evt.clientY - r.top) * scale, scale };
  }
  svg.addEventListener("wheel", (evt) => {
    evt.preventDefault();
    const p = toGraph(evt);
    zoom(evt.deltaY > 0 ? 1.15 : 1 / 1.15, p.x, p.y);
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (evt) => {
    if (evt.target.closest("g.node")) return;
    drag = { x: evt.clientX, y: evt.clientY, view: { ...view }, scale: toGraph(evt).scale };
    svg.classList.add("dragging");
  });
  window.addEventListener("pointermove", (evt) => {
    if (!drag) return;
    view = { ...drag.view, x: drag.view.x - (evt.clientX - drag.x) * drag.scale, y: drag.view.y - (evt.clientY - drag.y) * drag.scale };
    apply();
  });
  window.addEventListener("pointerup", () => { drag = null; svg.classList.remove("dragging"); });
  document.getElementById("zoom-in").addEventListener("click", () => zoom(1 / 1.3, view.x + view.w / 2, view.y + view.h / 2));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(1.3, view.x + view.w / 2, view.y + view.h / 2));
  document.getElementById("zoom-fit").addEventListener("click", () => { view = { x: 0, y: 0, w: full.w, h: full.h }; apply(); });
  labelBox.addEventListener("change", () => svg.classList.toggle("labels-off", !labelBox.checked));

  // Filter: a node stays when its id or namespace contains the text; an
  // edge stays when both its ends stay.
  function filter() {
    const text = filterBox.value.trim().toLowerCase();
    const visible = nodes.map((n) => {
      const keep = (!text || n.dataset.id.toLowerCase().includes(text) || n.dataset.ns.toLowerCase().includes(text))
        && !(hideExternal.checked && n.classList.contains("external"));
      n.classList.toggle("hidden", !keep);
      return keep;
    });
    let edgesShown = 0;
    for (const e of edges) {
      const keep = visible[Number(e.dataset.from)] && visible[Number(e.dataset.to)]
        && !(showRemoved && !showRemoved.checked && e.classList.contains("removed"));
      e.classList.toggle("hidden", !keep);
      const l = labels.get(e.id.slice(1));
      if (l) l.classList.toggle("hidden", !keep);
      if (keep) edgesShown += 1;
    }
    const nodesShown = visible.filter(Boolean).length;
    shown.textContent = `${nodesShown} of ${nodes.length} nodes, ${edgesShown} of ${edges.length} edges`;
    svg.dataset.visibleNodes = String(nodesShown);
    svg.dataset.visibleEdges = String(edgesShown);
  }
  filterBox.addEventListener("input", filter);
  hideExternal.addEventListener("change", filter);
  if (showRemoved) showRemoved.addEventListener("change", filter);

  // Selection: highlight a node's edges and list them.
  function select(node) {
    const index = String(nodes.indexOf(node));
    for (const n of nodes) n.classList.toggle("selected", n === node);
    const out = [], into = [];
    for (const e of edges) {
      const mine = e.dataset.from === index || e.dataset.to === index;
      e.classList.toggle("hl", mine);
      e.classList.toggle("dim", !mine);
      const l = labels.get(e.id.slice(1));
      if (l) l.classList.toggle("hl", mine);
      if (!mine) continue;
      const other = nodes[Number(e.dataset.from === index ? e.dataset.to : e.dataset.from)].dataset.id;
      const change = ["added", "removed", "changed"].find((c) => e.classList.contains(c));
      const item = [other, e.dataset.ports, change];
      (e.dataset.from === index ? out : into).push(item);
    }
    details.replaceChildren();
    const h = document.createElement("h3");
    h.textContent = node.dataset.id;
    details.append(h);
    for (const [title, list] of [["may open connections to", out], ["may be reached from", into]]) {
      const p = document.createElement("p");
      p.textContent = `${title} (${list.length}):`;
      const ul = document.createElement("ul");
      for (const [other, ports, change] of list) {
        const li = document.createElement("li");
        li.textContent = `${other}: ${ports}${change ? ` (${change})` : ""}`;
        ul.append(li);
      }
      details.append(p, ul);
    }
  }
  for (const n of nodes) n.addEventListener("click", () => select(n));

  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("filter")) filterBox.value = hash.get("filter");
  filter();
  document.body.dataset.ready = "true";
})();
