// The occupancy report's chart: uPlot over the rollups the page was rendered with, a minute
// or an hour a point (chart.step), on the building's clock (chart.zone) wherever the viewer is.
(function () {
  "use strict";

  var COLOURS = ["#20303f", "#1b7f3b", "#a86400", "#3367d6"];

  document.addEventListener("DOMContentLoaded", function () {
    var holder = document.getElementById("occupancy-chart");
    var source = document.getElementById("occupancy-chart-data");
    if (!holder || !source || typeof uPlot === "undefined") return;
    var chart = JSON.parse(source.textContent);
    var series = [{}];
    chart.series.forEach(function (s, n) {
      series.push({
        label: s.name,
        stroke: COLOURS[Math.floor(n / 2) * 2 % COLOURS.length + (s.what === "peak" ? 1 : 0)],
        width: s.what === "peak" ? 1 : 2,
        dash: s.what === "peak" ? [4, 3] : undefined,
        spanGaps: false,
      });
    });
    var onClock = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), chart.zone); };
    var plot = new uPlot({
      width: Math.max(280, holder.clientWidth || 640),
      height: 240,
      series: series,
      tzDate: onClock,
      scales: {
        x: { time: true, range: function () { return [chart.since, chart.until]; } },
        y: { range: function (u, min, max) { return [0, Math.max(5, max || 0)]; } },
      },
    }, chart.data, holder);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(280, holder.clientWidth), height: 240 });
    });
  });
})();
