// The Sessions screen's chart: billable sessions per day of the current period, the running total
// and the session limit as a line. Data comes from a json_script element (no inline script: CSP),
// named by the canvas's data-sessions-chart (app.js draws the data-chart canvases, of another shape).
(function () {
  "use strict";
  function draw() {
    var canvas = document.getElementById("usage-chart");
    var source = canvas && document.getElementById(canvas.getAttribute("data-sessions-chart"));
    if (!canvas || !source || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    var datasets = [
      { type: "bar", label: "Billable sessions per day", data: data.daily, backgroundColor: "#c7c9f5", yAxisID: "y" },
      { type: "line", label: "Running total", data: data.total, borderColor: "#4f46e5", pointRadius: 0, tension: 0.2, yAxisID: "y" }
    ];
    if (data.limit) {
      datasets.push({
        type: "line", label: "Session limit", data: data.labels.map(function () { return data.limit; }),
        borderColor: "#b42318", borderDash: [6, 4], pointRadius: 0, yAxisID: "y"
      });
    }
    new window.Chart(canvas, {
      data: { labels: data.labels, datasets: datasets },
      options: {
        animation: false, maintainAspectRatio: false,
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom" } }
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
