// A device page's numeric meta charts: uPlot over the history writer's rollups the page was
// rendered with (page_data.meta_charts): the last 24 h from minute rows, 7 and 30 days from
// hour rows; a line for the mean and thin ones for the min and max of each bucket. The axis is
// on the building's clock (charts.zone), wherever the viewer is.
(function () {
  "use strict";

  var RANGES = { "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

  document.addEventListener("DOMContentLoaded", function () {
    var source = document.getElementById("meta-charts");
    if (!source || typeof uPlot === "undefined") return;
    var charts = JSON.parse(source.textContent);
    var onClock = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), charts.zone); };
    var drawn = {};

    function columns(chart, range) {
      var tier = range === "24h" ? chart.minute : chart.hour;
      var since = charts.now - RANGES[range];
      var first = 0;
      while (first < tier[0].length && tier[0][first] < since) first++;
      return tier.map(function (column) { return column.slice(first); });
    }

    function draw(chart, range) {
      var holder = document.getElementById(chart.dom);
      if (!holder) return;
      if (drawn[chart.dom]) drawn[chart.dom].destroy();
      var since = charts.now - RANGES[range];
      var unit = chart.unit ? " (" + chart.unit + ")" : "";
      drawn[chart.dom] = new uPlot({
        width: Math.max(280, holder.clientWidth || 480),
        height: 180,
        tzDate: onClock,
        series: [
          {},
          { label: "min" + unit, stroke: "#8fa3b8", width: 1, spanGaps: false },
          { label: "mean" + unit, stroke: "#20303f", width: 2, spanGaps: false },
          { label: "max" + unit, stroke: "#8fa3b8", width: 1, spanGaps: false },
        ],
        scales: { x: { time: true, range: function () { return [since, charts.now]; } } },
        legend: { live: false },
      }, columns(chart, range), holder);
    }

    charts.charts.forEach(function (chart) { draw(chart, "24h"); });

    document.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest(".chart-range");
      if (!button) return;
      var chart = charts.charts.find(function (c) { return c.dom === button.dataset.chart; });
      if (!chart || !RANGES[button.dataset.range]) return;
      button.parentNode.querySelectorAll(".chart-range").forEach(function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
      draw(chart, button.dataset.range);
    });

    window.addEventListener("resize", function () {
      charts.charts.forEach(function (chart) {
        var holder = document.getElementById(chart.dom);
        if (drawn[chart.dom] && holder) drawn[chart.dom].setSize({ width: Math.max(280, holder.clientWidth), height: 180 });
      });
    });
  });
})();
