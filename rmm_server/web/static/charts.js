// The agent page's charts: 5-minute points (GET <data-src>: Prometheus's or the server's) drawn with uPlot,
// in the browser's time zone, redrawn every minute. No inline script: the page's CSP forbids it.
"use strict";
(function () {
  const NAMES = {
    cpu_ratio: "CPU", memory_ratio: "memory", disk_ratio: "disk",
    receive_bytes_per_second: "received", transmit_bytes_per_second: "sent",
  };
  const COLOURS = ["#1565c0", "#c62828"];
  const plots = [];

  function draw(box, data) {
    const root = document.getElementById("charts");
    for (const el of root.querySelectorAll(".chart")) {
      const names = el.dataset.series.split(",");
      const scale = parseFloat(el.dataset.scale || "1");
      const columns = [data.time].concat(
        names.map((n) => data[n].map((v) => (v === null ? null : v * scale))));
      const opts = {
        width: Math.max(240, Math.min(el.clientWidth || 600, 600)),
        height: 180,
        series: [{}].concat(names.map((n, i) => ({ label: NAMES[n] || n, stroke: COLOURS[i % 2], spanGaps: false }))),
        axes: [{}, { size: 60 }],
      };
      el.textContent = "";
      if (data.time.length === 0) {
        el.textContent = "No points yet: the first appear with the agent's next report.";
        el.dataset.drawn = "empty";
        continue;
      }
      plots.push(new uPlot(opts, columns, el));
      el.dataset.drawn = String(data.time.length);
    }
  }

  async function load() {
    const root = document.getElementById("charts");
    if (!root || typeof uPlot === "undefined") return;
    const reply = await fetch(root.dataset.src, { credentials: "same-origin" });
    if (reply.status === 401 || reply.redirected) { window.location.reload(); return; }
    if (!reply.ok) return;
    const data = await reply.json();
    // Where the points came from: Prometheus (--prometheus-url), or the server's own history,
    // and why when Prometheus could not be asked.
    const source = document.getElementById("chart-source");
    if (source && data.notice) {
      source.textContent = data.notice;
      source.dataset.source = data.source || "";
      source.classList.toggle("error", Boolean(data.fallback));
    }
    while (plots.length) plots.pop().destroy();
    draw(root, data);
  }

  document.addEventListener("DOMContentLoaded", () => { load(); setInterval(load, 60000); });
})();
