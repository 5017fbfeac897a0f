// The list of runs: one row per run folder, refreshed every two seconds.
(function () {
  const { el, fmt, percent, getJson } = elm;
  const body = document.querySelector("#runs tbody");
  const status = document.getElementById("runs-status");

  function row(run) {
    const link = el("a", { href: `/runs/${encodeURIComponent(run.name)}/` }, run.name);
    if (run.problem) return el("tr", { "data-run": run.name }, el("td", {}, link), el("td", { colspan: "7" }, run.problem));
    return el("tr", { "data-run": run.name },
      el("td", {}, link),
      el("td", {}, run.environment || "-"),
      el("td", { class: "progress" }, run.progress),
      el("td", {}, el("span", { class: `state ${run.state}` }, run.state)),
      el("td", {}, percent(run.coverage)),
      el("td", {}, fmt(run.qd_score)),
      el("td", {}, fmt(run.max_fitness)),
      el("td", {}, fmt(run.evals_per_s)));
  }

  async function refresh() {
    try {
      const data = await getJson("/api/runs");
      body.replaceChildren(...data.runs.map(row));
      status.textContent = data.runs.length ? "" : "No runs in this folder yet.";
    } catch (error) {
      status.textContent = `cannot reach the server: ${error.message}`;
    }
    setTimeout(refresh, 2000);
  }
  refresh();
})();
