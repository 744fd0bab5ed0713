// The fleet table (GET /admin/backends) with its drain and enable buttons, and the live
// traffic (GET /admin/stats) drawn over the last minutes.
"use strict";

const CHART_SECONDS = 180;

async function loadFleet() {
  const answer = await api.get("/admin/backends");
  document.getElementById("policy").textContent = "routing: " + answer.policy;
  const rows = answer.backends.map((backend) => {
    const load = backend.load;
    const routing = backend.routing;
    const draining = backend.draining;
    const path = "/admin/backends/" + encodeURIComponent(backend.name) + "/"
      + (draining ? "enable" : "drain");
    const toggle = actionButton(draining ? "enable" : "drain", async () => {
      await api.post(path);
      await loadFleet();
    }, {"data-backend": backend.name, "data-action": draining ? "enable" : "drain"});
    const problem = backend.last_error || backend.scrape_error;
    return el("tr", {"data-backend": backend.name},
      el("td", {title: backend.address}, backend.name),
      el("td", {class: "models"}, backend.models.join(", ") || "–"),
      el("td", {}, el("span", {class: "state " + stateClass(backend.state),
                               "data-state": backend.state, title: problem}, backend.state)),
      el("td", {}, backend.in_flight),
      el("td", {}, load ? percent(load.kv_cache_usage) : "–"),
      el("td", {}, load ? number(load.waiting) : "–"),
      el("td", {}, load ? number(load.running) : "–"),
      el("td", {}, load ? number(load.preemptions, 2) : "–"),
      el("td", {}, load ? seconds(load.age) : "no signals"),
      el("td", {}, routing ? number(routing.score, 3) : "–"),
      el("td", {}, toggle));
  });
  fillRows(document.getElementById("fleet"), rows, "no backends");
}

function stateClass(state) {
  if (state === "ready") return "good";
  if (state === "draining") return "warn";
  return "bad";
}

async function loadTraffic() {
  const stats = await api.get("/admin/stats");
  const series = stats.series.slice(-CHART_SECONDS);
  const rps = series.map((s) => s.requests);
  const errors = series.map((s) => Object.values(s.errors).reduce((a, b) => a + b, 0));
  drawChart(document.getElementById("chart-rps"), [rps, errors], ["requests", "errors"]);
  drawChart(document.getElementById("chart-ttft"),
            [series.map((s) => s.ttft_p50), series.map((s) => s.ttft_p99)], ["p50", "p99"]);
  const last = series.length > 1 ? series[series.length - 2] : null;  // the last whole second
  document.getElementById("traffic-now").textContent = last
    ? `${last.requests} req/s, ${stats.in_flight} in flight` : "";
  const kinds = Object.entries(stats.errors).sort((a, b) => b[1] - a[1]);
  document.getElementById("errors").textContent = kinds.length
    ? "errors in the last " + stats.seconds + "s: "
      + kinds.map(([kind, count]) => kind + " " + count).join(", ")
    : "no errors in the last " + stats.seconds + "s";
}
