// Helpers shared by the report and the dashboard's pages (the report embeds this file, the
// dashboard serves it). Candidate text is only ever set as text, never as markup.
"use strict";
const elm = (function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PYTHON = new RegExp(
    [
      "(#[^\\n]*)",
      "(\"\"\"[\\s\\S]*?\"\"\"|'''[\\s\\S]*?'''|[rbfuRBFU]{0,2}\"(?:\\\\.|[^\"\\\\\\n])*\"|[rbfuRBFU]{0,2}'(?:\\\\.|[^'\\\\\\n])*')",
      "\\b(and|as|assert|async|await|break|class|continue|def|del|elif|else|except|finally|for|from|" +
        "global|if|import|in|is|lambda|nonlocal|not|or|pass|raise|return|try|while|with|yield|None|True|False)\\b",
      "\\b(\\d[\\d_]*(?:\\.\\d*)?(?:[eE][+-]?\\d+)?)\\b",
    ].join("|"),
    "g"
  );

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "-";
    if (typeof value === "number" && !Number.isInteger(value)) return value.toPrecision(6).replace(/\.?0+$/, "");
    return String(value);
  }

  function percent(value) {
    return value === null || value === undefined ? "-" : (100 * value).toFixed(1) + "%";
  }

  function coords(list) {
    return "(" + list.join(", ") + ")";
  }

  function table(rows, headers) {
    const node = el("table", {});
    if (headers) node.append(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
    for (const row of rows) node.append(el("tr", {}, ...row.map((cell) => el("td", {}, cell))));
    return node;
  }

  function highlighted(code, fileName) {
    const pre = el("pre", { id: "source" });
    if (!/\.py$/.test(fileName || "")) {
      pre.textContent = code;
      return pre;
    }
    let last = 0;
    for (const match of code.matchAll(PYTHON)) {
      if (match.index > last) pre.append(code.slice(last, match.index));
      const kind = match[1] ? "c" : match[2] ? "s" : match[3] ? "k" : "n";
      pre.append(el("span", { class: kind }, match[0]));
      last = match.index + match[0].length;
    }
    pre.append(code.slice(last));
    return pre;
  }

  function diffBlock(diff) {
    const pre = el("pre", { class: "diff" });
    for (const line of diff.split("\n")) {
      const kind = /^(\+\+\+|---)/.test(line) ? "meta" : line.startsWith("+") ? "add"
        : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "";
      pre.append(el("span", { class: kind }, line + "\n"));
    }
    return pre;
  }

  function product(sizes) {
    let combos = [[]];
    for (const size of sizes) {
      const next = [];
      for (const combo of combos) for (let i = 0; i < size; i++) next.push(combo.concat([i]));
      combos = next;
    }
    return combos;
  }

  function ravel(index, bins) {
    let flat = 0;
    for (let d = 0; d < bins.length; d++) flat = flat * bins[d] + index[d];
    return flat;
  }

  function binRange(layout, dim, bin) {
    const [low, high] = layout.ranges[dim];
    const step = (high - low) / layout.bins[dim];
    return `${layout.names[dim]} ${fmt(low + bin * step)}..${fmt(low + (bin + 1) * step)}`;
  }

  function axesCaption(names) {
    return `${names[0]} →` + (names.length > 1 ? `, ${names[1]} ↑` : "");
  }

  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  }

  // Marks `niche` as the one chosen on the map drawn in `mapBox`.
  function markNiche(mapBox, niche) {
    for (const node of mapBox.querySelectorAll(".niche.selected")) node.classList.remove("selected");
    const shape = mapBox.querySelector(`[data-niche="${niche}"]`);
    if (shape) shape.classList.add("selected");
  }

  function showEmptyNiche(detail) {
    detail.replaceChildren(el("h3", { id: "detail-title" }, "Empty niche"),
      el("p", { class: "hint" }, "No candidate has been placed here."));
  }

  // One handler for every click that chooses something: a niche on the map, a row of the
  // top elites (data-select names its niche) or a link to a candidate.
  function onChoose(selectNiche, showCandidate) {
    document.addEventListener("click", (event) => {
      const target = event.target instanceof Element ? event.target : null;
      const niche = target && target.closest("[data-niche]");
      const select = target && target.closest("[data-select]");
      const candidate = target && target.closest("[data-candidate]");
      if (niche) selectNiche(Number(niche.getAttribute("data-niche")));
      else if (select) selectNiche(Number(select.getAttribute("data-select")));
      else if (candidate) showCandidate(Number(candidate.getAttribute("data-candidate")));
    });
  }

  return {
    el, svgEl, fmt, percent, coords, table, highlighted, diffBlock, product, ravel, binRange, axesCaption, getJson,
    markNiche, showEmptyNiche, onChoose,
  };
})();
