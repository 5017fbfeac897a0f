// The report's archive explorer: draws the archive map from the embedded run data and shows
// the elite of a clicked niche. Candidate text is only ever set as text, never as markup.
(function () {
  "use strict";
  const { el, svgEl, fmt, coords, highlighted, diffBlock, product, ravel, binRange, axesCaption } = elm;
  const data = JSON.parse(document.getElementById("run-data").textContent);
  const elitesByNiche = new Map(data.elites.map((e) => [e.niche, e]));
  const mapBox = document.getElementById("archive-map");
  const detail = document.getElementById("detail");

  function describe(values) {
    if (!values) return "-";
    if (data.names.length === values.length) return values.map((v, i) => `${data.names[i]}=${fmt(v)}`).join(", ");
    return coords(values.map(fmt));
  }

  // -- the map ---------------------------------------------------------------------------------

  function nicheShape(shape, niche, coordinates) {
    const elite = elitesByNiche.get(niche);
    shape.setAttribute("class", elite ? "niche filled" : "niche empty");
    shape.setAttribute("data-niche", String(niche));
    if (elite) shape.setAttribute("fill", elite.color);
    const title = svgEl("title", {});
    title.textContent = elite
      ? `niche ${coords(coordinates)}: fitness ${fmt(elite.fitness)}`
      : `niche ${coords(coordinates)}: empty`;
    shape.append(title);
    return shape;
  }

  function drawGrid(layout) {
    const bins = layout.bins;
    const nx = bins[0];
    const ny = bins.length > 1 ? bins[1] : 1;
    const slices = product(bins.slice(2));
    const room = slices.length > 1 ? 180 : 520;
    const cell = Math.max(4, Math.min(56, Math.floor(room / Math.max(nx, ny))));
    for (const rest of slices) {
      const svg = svgEl("svg", { width: nx * cell, height: ny * cell, role: "img" });
      for (let i = 0; i < nx; i++) {
        for (let j = 0; j < ny; j++) {
          const index = bins.length > 1 ? [i, j].concat(rest) : [i];
          const rect = svgEl("rect", { x: i * cell, y: (ny - 1 - j) * cell, width: cell, height: cell });
          svg.append(nicheShape(rect, ravel(index, bins), index));
        }
      }
      const caption = rest.length
        ? rest.map((r, k) => binRange(layout, k + 2, r)).join(", ")
        : axesCaption(layout.names);
      mapBox.append(el("figure", {}, svg, el("figcaption", {}, caption)));
    }
  }

  function drawCvt(layout) {
    const width = 520;
    const height = layout.names.length > 1 ? 520 : 70;
    const radius = Math.max(2.5, Math.min(14, 260 / Math.sqrt(layout.cells)));
    const [xr, yr] = [layout.ranges[0], layout.ranges[1] || [0, 1]];
    const svg = svgEl("svg", { width, height, role: "img" });
    layout.centroids.forEach((centroid, niche) => {
      const x = radius + ((centroid[0] - xr[0]) / (xr[1] - xr[0])) * (width - 2 * radius);
      const y = layout.names.length > 1
        ? height - radius - ((centroid[1] - yr[0]) / (yr[1] - yr[0])) * (height - 2 * radius)
        : height / 2;
      const filled = elitesByNiche.has(niche);
      const circle = svgEl("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: filled ? radius : radius * 0.5 });
      svg.append(nicheShape(circle, niche, [niche]));
    });
    const caption = layout.names.length > 2
      ? `centroids projected on ${layout.names[0]} → and ${layout.names[1]} ↑`
      : axesCaption(layout.names);
    mapBox.append(el("figure", {}, svg, el("figcaption", {}, caption)));
  }

  function drawLegend() {
    const legend = document.getElementById("legend");
    if (!data.fitness_range) {
      legend.append("The archive is empty.");
      return;
    }
    const bar = el("span", { class: "bar" });
    bar.style.background = `linear-gradient(to right, ${data.colors.join(", ")})`;
    legend.append("fitness", el("span", {}, fmt(data.fitness_range[0])), bar, el("span", {}, fmt(data.fitness_range[1])));
  }

  function drawTop() {
    const rows = data.elites.slice(0, 20).map((elite, rank) =>
      el("tr", {},
        el("td", {}, rank + 1),
        el("td", {}, el("button", { class: "link", "data-select": String(elite.niche) }, coords(elite.coordinates))),
        el("td", {}, elite.candidate_id),
        el("td", {}, fmt(elite.fitness)),
        el("td", {}, describe(elite.descriptor)))
    );
    const head = el("tr", {}, ...["#", "niche", "candidate", "fitness", "descriptor"].map((h) => el("th", {}, h)));
    document.getElementById("top-elites").append(el("table", {}, head, ...rows));
  }

  // -- the detail panel ---------------------------------------------------------------------------

  function candidateLink(id) {
    return data.candidates[id] ? el("button", { class: "link", "data-candidate": String(id) }, `candidate ${id}`)
      : `candidate ${id}`;
  }

  function lineageOf(id) {
    const steps = [];
    const seen = new Set();
    let current = data.candidates[id];
    while (current && !seen.has(current.id)) {
      steps.unshift(current);
      seen.add(current.id);
      current = current.parent_id === null ? null : data.candidates[current.parent_id];
    }
    return { steps, complete: steps.length > 0 && steps[0].parent_id === null };
  }

  function showCandidate(id) {
    const c = data.candidates[id];
    const facts = [
      ["fitness", fmt(c.fitness)],
      ["descriptor", describe(c.descriptor)],
      ...Object.entries(c.scores || {}).map(([k, v]) => [k, fmt(v)]),
      ["niche", c.coordinates ? coords(c.coordinates) : "-"],
      ["status", `${c.status} (reached ${c.stage})`],
      ["iteration", c.iteration],
      ["operator", c.operator],
      ["parent", c.parent_id === null ? "none (a seed)" : candidateLink(c.parent_id)],
      ["commit message", c.commit_message || "-"],
    ];
    const table = el("table", { id: "scores" }, ...facts.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    const parts = [el("h3", { id: "detail-title" }, `Candidate ${c.id}`), table];
    if (c.render) parts.push(el("div", { class: "render" }, el("img", { src: c.render, alt: `picture of candidate ${c.id}` })));
    else if (data.render_notes.length) parts.push(el("p", { class: "hint" }, data.render_notes.join(" ")));
    parts.push(el("h4", {}, "Source"));
    parts.push(c.source === null || c.source === undefined
      ? el("p", { class: "hint", id: "source" }, "The report holds the source of elites only.")
      : highlighted(c.source, c.file_name));
    const lineage = lineageOf(id);
    parts.push(el("h4", {}, `Lineage: ${lineage.steps.length} step(s) from ${lineage.complete ? "a seed" : "the oldest ancestor on record"}`));
    parts.push(el("p", { class: "hint" }, "fitness " + lineage.steps.map((s) => fmt(s.fitness)).join(" → ")));
    const items = lineage.steps.map((step) => el("li", {},
      el("div", {}, candidateLink(step.id), ` · iteration ${step.iteration} · ${step.operator} · fitness ${fmt(step.fitness)}`),
      el("div", { class: "msg" }, step.commit_message || "(no commit message)"),
      step.diff ? el("details", {}, el("summary", {}, "diff"), diffBlock(step.diff)) : null));
    parts.push(el("ol", { class: "lineage" }, ...items));
    const first = lineage.steps[0];
    if (!lineage.complete && first && first.parent_id !== null) {
      parts.push(el("p", { class: "hint", id: "lineage-left-out" },
        `Earlier steps are not in this page (it holds ${data.num_elites} elites and the nearest of their ancestors): `
        + `${data.inspect} --lineage ${c.id}`));
    }
    detail.replaceChildren(...parts);
  }

  function selectNiche(niche) {
    elm.markNiche(mapBox, niche);
    const elite = elitesByNiche.get(niche);
    if (elite) showCandidate(elite.candidate_id);
    else elm.showEmptyNiche(detail);
  }

  elm.onChoose(selectNiche, showCandidate);

  if (data.layout) {
    if (data.layout.kind === "grid") drawGrid(data.layout);
    else drawCvt(data.layout);
  } else {
    mapBox.append(el("p", { class: "hint" }, "This run's store holds no archive layout: no map."));
  }
  drawLegend();
  drawTop();
  if (data.best !== null && data.candidates[data.best]) {
    const best = data.elites[0];
    selectNiche(best.niche);
  }
})();
