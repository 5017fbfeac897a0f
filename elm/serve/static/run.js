// A run's live page: polls the server every second for what the run committed since the
// last poll (metrics, events) and redraws the archive when a new iteration lands.
(function () {
  const { el, svgEl, fmt, percent, coords, table, highlighted, diffBlock, product, ravel, binRange, axesCaption, getJson } =
    elm;
  const POLL_MS = 1000;
  const MESSAGES_EVERY = 5;
  const EVENTS_SHOWN = 300;
  const CURVE_POINTS = 800;
  const run = document.body.getAttribute("data-run");
  const api = `/api/runs/${encodeURIComponent(run)}`;
  const mapBox = document.getElementById("archive-map");
  const detail = document.getElementById("detail");
  const slider = document.getElementById("snapshot-slider");

  const state = {
    metrics: [], events: [], snapshots: [], names: [],
    archive: null, archiveKey: null, lastIteration: null,
    elitesByNiche: new Map(), selectedNiche: null, shownCandidate: null, polls: 0,
    messagesAt: undefined, messagesPoll: -Infinity, messagesDone: false, drawnLayout: null,
  };

  // -- header and overview ---------------------------------------------------------------------

  function showOverview(live) {
    document.getElementById("progress").textContent = live.progress;
    const badge = document.getElementById("state");
    badge.textContent = live.state;
    badge.className = `state ${live.state}`;
    document.getElementById("environment").textContent = `environment ${live.environment || "?"}`;
    document.getElementById("archive-stats").replaceChildren(...table([
      ["coverage", percent(live.coverage)],
      ["QD score", fmt(live.qd_score)],
      ["best fitness", fmt(live.max_fitness)],
      ["evaluations/s", fmt(live.evals_per_s)],
      ["snapshots", live.snapshots.length ? live.snapshots.join(", ") : "none"],
    ]).childNodes);
    document.getElementById("candidate-total").textContent = `(${live.candidates})`;
    document.getElementById("statuses").replaceChildren(
      ...table(Object.entries(live.statuses), ["status", "count"]).childNodes);
    const generated = live.funnel.generated || 0;
    document.getElementById("funnel").replaceChildren(...table(
      Object.entries(live.funnel).map(([stage, count]) => [stage, count, percent(generated ? count / generated : null), bar(generated ? count / generated : 0)]),
      ["stage", "reached", "of generated", ""]).childNodes);
    document.getElementById("seed-funnel").textContent = live.seed_funnel_text || "";
  }

  function bar(share) {
    const inner = el("span", {});
    inner.style.width = `${Math.max(0, Math.min(1, share)) * 100}%`;
    return el("div", { class: "bar-cell" }, inner);
  }

  function showStages() {
    const recent = state.metrics.slice(-10).map((m) => m.stages || {});
    const mean = (key) => {
      const values = recent.map((s) => s[key]).filter((v) => typeof v === "number");
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    };
    const rows = [
      ["generation", fmt(mean("generated_per_s")), percent(mean("generation_busy")), bar(mean("generation_busy") || 0)],
      ["evaluation", fmt(mean("evaluated_per_s")), percent(mean("evaluation_busy")), bar(mean("evaluation_busy") || 0)],
    ];
    const caption = recent.length ? `mean of the last ${recent.length} iteration(s)` : "no iteration yet";
    document.getElementById("stages").replaceChildren(
      ...table(rows, ["stage", "candidates/s", "busy", ""]).childNodes,
      el("caption", { class: "hint" }, caption));
  }

  // -- curves ------------------------------------------------------------------------------------

  function curve(title, values, format) {
    const width = 340, height = 170, pad = 34;
    const svg = svgEl("svg", { width, height, role: "img", "data-curve": title });
    const points = values.filter((p) => typeof p[1] === "number");
    if (points.length) {
      const step = Math.max(1, Math.ceil(points.length / CURVE_POINTS));
      const shown = points.filter((_, i) => i % step === 0 || i === points.length - 1);
      const xs = shown.map((p) => p[0]), ys = shown.map((p) => p[1]);
      const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
      let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
      if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
      const sx = (x) => pad + ((x - x0) / Math.max(x1 - x0, 1)) * (width - pad - 8);
      const sy = (y) => height - 20 - ((y - y0) / (y1 - y0)) * (height - 34);
      svg.append(svgEl("polyline", { points: shown.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ") }));
      const label = (x, y, text, anchor) => {
        const node = svgEl("text", { x, y, "text-anchor": anchor || "start" });
        node.textContent = text;
        svg.append(node);
      };
      label(2, 12, format(y1));
      label(2, height - 22, format(y0));
      label(pad, height - 4, `iteration ${x0}`);
      label(width - 8, height - 4, `${x1}`, "end");
    }
    return el("figure", {}, svg, el("figcaption", {}, title));
  }

  function showCurves() {
    const m = state.metrics;
    document.getElementById("curves").replaceChildren(
      curve("QD score", m.map((r) => [r.iteration, r.qd_score]), fmt),
      curve("coverage", m.map((r) => [r.iteration, r.coverage]), percent),
      curve("best fitness", m.map((r) => [r.iteration, r.max_fitness]), fmt));
  }

  // -- events and messages -----------------------------------------------------------------------

  function showEvents() {
    const box = document.getElementById("events");
    if (!state.events.length) return;
    const rows = state.events.slice(-EVENTS_SHOWN).reverse().map((e) => [
      e.iteration === null ? "-" : e.iteration,
      new Date(e.at * 1000).toLocaleTimeString(),
      e.kind,
      el("span", { class: "detail-text" }, JSON.stringify(e.detail)),
    ]);
    box.replaceChildren(table(rows, ["iteration", "time", "kind", "detail"]));
  }

  async function refreshMessages() {
    const box = document.getElementById("messages");
    try {
      const data = await getJson(`${api}/messages`);
      const rows = data.messages.slice(0, 40).map((m) => [
        el("span", { class: "detail-text" }, m.text === null ? "(none)" : m.text),
        m.tries, m.ran, m.placed, m.new_niches, m.improvements]);
      const counting = data.counted < data.candidates
        ? el("p", { class: "hint", id: "messages-counting" }, `counted over ${data.counted} of ${data.candidates} candidates so far`)
        : null;
      state.messagesDone = !counting;
      box.replaceChildren(...[counting, rows.length
        ? table(rows, ["commit message", "tries", "ran", "placed", "new niches", "improvements"])
        : el("p", { class: "hint" }, "No mutated candidate yet.")].filter(Boolean));
    } catch (error) {
      box.replaceChildren(el("p", { class: "hint" }, `message statistics unavailable: ${error.message}`));
    }
  }

  // -- the archive map ---------------------------------------------------------------------------

  function color(fitness) {
    const range = state.archive.fitness_range, colors = state.archive.colors;
    const share = range[1] > range[0] ? (fitness - range[0]) / (range[1] - range[0]) : 1;
    return colors[Math.max(0, Math.min(colors.length - 1, Math.round(share * (colors.length - 1))))];
  }

  function nicheShape(shape, niche, coordinates) {
    shape.setAttribute("data-niche", String(niche));
    shape.setAttribute("data-coordinates", coords(coordinates));
    shape.append(svgEl("title", {}));
    return paint(shape);
  }

  // Shapes are drawn once per layout and repainted in place, so a click never hits a map
  // that is being replaced.
  function paint(shape) {
    const niche = Number(shape.getAttribute("data-niche"));
    const elite = state.elitesByNiche.get(niche);
    shape.setAttribute("class", "niche " + (elite ? "filled" : "empty") + (niche === state.selectedNiche ? " selected" : ""));
    if (elite) shape.setAttribute("fill", color(elite.fitness));
    else shape.removeAttribute("fill");
    if (shape.hasAttribute("data-radius")) {
      const radius = Number(shape.getAttribute("data-radius"));
      shape.setAttribute("r", elite ? radius : radius * 0.5);
    }
    const where = shape.getAttribute("data-coordinates");
    shape.firstChild.textContent = elite ? `niche ${where}: fitness ${fmt(elite.fitness)}` : `niche ${where}: empty`;
    return shape;
  }

  function drawGrid(layout) {
    const bins = layout.bins, nx = bins[0], ny = bins.length > 1 ? bins[1] : 1;
    const slices = product(bins.slice(2));
    const room = slices.length > 1 ? 180 : 520;
    const cell = Math.max(4, Math.min(56, Math.floor(room / Math.max(nx, ny))));
    const figures = [];
    for (const rest of slices) {
      const svg = svgEl("svg", { width: nx * cell, height: ny * cell, role: "img" });
      for (let i = 0; i < nx; i++) {
        for (let j = 0; j < ny; j++) {
          const index = bins.length > 1 ? [i, j].concat(rest) : [i];
          const rect = svgEl("rect", { x: i * cell, y: (ny - 1 - j) * cell, width: cell, height: cell });
          svg.append(nicheShape(rect, ravel(index, bins), index));
        }
      }
      const caption = rest.length ? rest.map((r, k) => binRange(layout, k + 2, r)).join(", ") : axesCaption(layout.names);
      figures.push(el("figure", {}, svg, el("figcaption", {}, caption)));
    }
    return figures;
  }

  function drawCvt(layout) {
    const width = 520, height = layout.names.length > 1 ? 520 : 70;
    const radius = Math.max(2.5, Math.min(14, 260 / Math.sqrt(layout.cells)));
    const [xr, yr] = [layout.ranges[0], layout.ranges[1] || [0, 1]];
    const svg = svgEl("svg", { width, height, role: "img" });
    layout.centroids.forEach((centroid, niche) => {
      const x = radius + ((centroid[0] - xr[0]) / (xr[1] - xr[0])) * (width - 2 * radius);
      const y = layout.names.length > 1 ? height - radius - ((centroid[1] - yr[0]) / (yr[1] - yr[0])) * (height - 2 * radius) : height / 2;
      svg.append(nicheShape(svgEl("circle", { cx: x.toFixed(1), cy: y.toFixed(1), "data-radius": radius }), niche, [niche]));
    });
    const caption = layout.names.length > 2 ? `centroids projected on ${layout.names[0]} → and ${layout.names[1]} ↑` : axesCaption(layout.names);
    return [el("figure", {}, svg, el("figcaption", {}, caption))];
  }

  function drawArchive() {
    const data = state.archive;
    state.elitesByNiche = new Map(data.elites.map((e) => [e.niche, e]));
    document.getElementById("snapshot-label").textContent = `${data.label}: ${data.elites.length} filled niches`;
    const legend = document.getElementById("legend");
    if (data.fitness_range) {
      const gradient = el("span", { class: "bar" });
      gradient.style.background = `linear-gradient(to right, ${data.colors.join(", ")})`;
      legend.replaceChildren("fitness", el("span", {}, fmt(data.fitness_range[0])), gradient, el("span", {}, fmt(data.fitness_range[1])));
    } else {
      legend.replaceChildren("The archive is empty.");
    }
    const layoutKey = JSON.stringify(data.layout);
    if (!data.layout) {
      mapBox.replaceChildren(el("p", { class: "hint" }, "This run's store holds no archive layout: no map."));
    } else if (layoutKey === state.drawnLayout) {
      for (const shape of mapBox.querySelectorAll("[data-niche]")) paint(shape);
    } else {
      mapBox.replaceChildren(...(data.layout.kind === "grid" ? drawGrid(data.layout) : drawCvt(data.layout)));
    }
    state.drawnLayout = layoutKey;
    const rows = data.elites.slice(0, 20).map((elite, rank) => [
      rank + 1, el("button", { class: "link", "data-select": String(elite.niche) }, coords(elite.coordinates)),
      elite.candidate_id, fmt(elite.fitness), elite.descriptor.map(fmt).join(", ")]);
    document.getElementById("top-elites").replaceChildren(table(rows, ["#", "niche", "candidate", "fitness", "descriptor"]));
  }

  function sliderSnapshot() {
    const position = Number(slider.value);
    return position < state.snapshots.length ? state.snapshots[position] : null;
  }

  async function loadArchive(force) {
    const snapshot = sliderSnapshot();
    const key = snapshot === null ? `live:${state.lastIteration}` : `snapshot:${snapshot}`;
    if (!force && key === state.archiveKey) return;
    const query = snapshot === null ? "" : `?snapshot=${snapshot}`;
    showArchive(await getJson(`${api}/archive${query}`));
  }

  function showArchive(data) {
    state.archive = data;
    state.archiveKey = data.snapshot === null ? `live:${data.iteration}` : `snapshot:${data.snapshot}`;
    drawArchive();
    if (state.selectedNiche === null && data.elites.length) selectNiche(data.elites[0].niche);
  }

  function updateSlider() {
    const atLive = Number(slider.value) >= Number(slider.max);
    slider.max = String(state.snapshots.length);
    if (atLive) slider.value = slider.max;
  }

  // -- the elite browser ---------------------------------------------------------------------------

  function candidateLink(id) {
    return el("button", { class: "link", "data-candidate": String(id) }, `candidate ${id}`);
  }

  function describe(values) {
    if (!values) return "-";
    const names = state.archive && state.archive.layout ? state.archive.layout.names : [];
    if (names.length === values.length) return values.map((v, i) => `${names[i]}=${fmt(v)}`).join(", ");
    return coords(values.map(fmt));
  }

  async function showCandidate(id) {
    state.shownCandidate = id;
    let c;
    try {
      c = await getJson(`${api}/candidates/${id}`);
    } catch (error) {
      detail.replaceChildren(el("p", { class: "hint" }, `cannot load candidate ${id}: ${error.message}`));
      return;
    }
    if (state.shownCandidate !== id) return;
    const facts = [
      ["fitness", fmt(c.fitness)],
      ["descriptor", describe(c.descriptor)],
      ...Object.entries(c.scores || {}).map(([k, v]) => [k, fmt(v)]),
      ["niche", c.coordinates ? coords(c.coordinates) : "-"],
      ["status", `${c.status} (reached ${c.stage})`],
      ["iteration", c.iteration],
      ["operator", c.operator],
      ["parent", c.parent_id === null ? "none (a seed)" : el("span", {}, candidateLink(c.parent_id), ` (fitness ${fmt(c.parent_fitness)})`)],
      ["commit message", el("span", { id: "commit-message", class: "detail-text" }, c.commit_message || "-")],
    ];
    if (c.error) facts.push(["error", el("span", { class: "detail-text" }, c.error)]);
    const picture = el("div", { class: "render", id: "picture" }, el("p", { class: "hint" }, "drawing…"));
    const lineage = el("div", { id: "lineage" }, el("p", { class: "hint" }, "loading the lineage…"));
    detail.replaceChildren(
      el("h3", { id: "detail-title" }, `Candidate ${c.id}`),
      el("table", { id: "scores" }, ...facts.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
      picture,
      el("h4", {}, "Source"),
      c.source === null ? el("p", { class: "hint", id: "source" }, "(no source: the mutation produced none)") : highlighted(c.source, c.file_name),
      el("h4", {}, "Diff from the parent"),
      c.diff ? diffBlock(c.diff) : el("p", { class: "hint" }, c.parent_id === null ? "A seed has no parent." : "(no diff stored)"),
      lineage);
    showPicture(id, picture);
    showLineage(id, lineage);
  }

  async function showPicture(id, box) {
    try {
      const data = await getJson(`${api}/candidates/${id}/picture`);
      if (state.shownCandidate !== id) return;
      box.replaceChildren(data.picture ? el("img", { src: data.picture, alt: `picture of candidate ${id}` })
        : el("p", { class: "hint" }, data.note || "no picture"));
    } catch (error) {
      box.replaceChildren(el("p", { class: "hint" }, `no picture: ${error.message}`));
    }
  }

  async function showLineage(id, box) {
    try {
      const data = await getJson(`${api}/candidates/${id}/lineage`);
      if (state.shownCandidate !== id) return;
      const steps = data.steps;
      const items = steps.map((step) => el("li", {},
        el("div", {}, candidateLink(step.id), ` · iteration ${step.iteration} · ${step.operator} · fitness ${fmt(step.fitness)}`),
        el("div", { class: "msg" }, step.commit_message || "(no commit message)"),
        step.diff ? el("details", {}, el("summary", {}, "diff"), diffBlock(step.diff)) : null));
      box.replaceChildren(
        el("h4", {}, `Lineage: ${steps.length} step(s) from ${data.complete ? "a seed" : "the oldest ancestor on record"}`),
        el("p", { class: "hint" }, "fitness " + steps.map((s) => fmt(s.fitness)).join(" → ")),
        el("ol", { class: "lineage" }, ...items));
    } catch (error) {
      box.replaceChildren(el("p", { class: "hint" }, `no lineage: ${error.message}`));
    }
  }

  function selectNiche(niche) {
    state.selectedNiche = niche;
    elm.markNiche(mapBox, niche);
    const elite = state.elitesByNiche.get(niche);
    if (elite) {
      showCandidate(elite.candidate_id);
      return;
    }
    state.shownCandidate = null;
    elm.showEmptyNiche(detail);
  }

  elm.onChoose(selectNiche, showCandidate);
  slider.addEventListener("input", () => loadArchive(false).catch(showProblem));

  // -- polling -----------------------------------------------------------------------------------

  function showProblem(error) {
    document.getElementById("connection").textContent = `(${error.message}; retrying)`;
  }

  async function poll() {
    try {
      const lastMetric = state.metrics.length ? state.metrics[state.metrics.length - 1].iteration : "";
      const lastEvent = state.events.length ? state.events[state.events.length - 1].id : "";
      // The first archive is asked for alongside the first poll: the page fills sooner.
      const firstArchive = state.polls === 0 ? getJson(`${api}/archive`).catch(() => null) : null;
      const live = await getJson(`${api}/live?metrics_after=${lastMetric}&events_after=${lastEvent}`);
      document.getElementById("connection").textContent = "";
      const changed = live.last_iteration !== state.lastIteration || state.polls === 0;
      state.lastIteration = live.last_iteration;
      state.snapshots = live.snapshots;
      showOverview(live);
      if (live.metrics.length) {
        state.metrics.push(...live.metrics);
        showCurves();
        showStages();
      } else if (state.polls === 0) {
        showCurves();
        showStages();
      }
      if (live.events.length) {
        state.events.push(...live.events);
        showEvents();
      }
      updateSlider();
      const first = firstArchive && await firstArchive;
      if (first && sliderSnapshot() === null) showArchive(first);
      if (changed) await loadArchive(false);
      const messagesDue = state.messagesDone ? state.polls - state.messagesPoll >= MESSAGES_EVERY : true;
      if ((state.messagesAt !== live.last_iteration || !state.messagesDone) && messagesDue) {
        state.messagesAt = live.last_iteration;
        state.messagesPoll = state.polls;
        refreshMessages();
      }
      state.polls += 1;
    } catch (error) {
      showProblem(error);
    }
    setTimeout(poll, POLL_MS);
  }
  if (document.body.getAttribute("data-single") !== null) document.getElementById("crumbs").remove();
  poll();
})();
