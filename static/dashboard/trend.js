// The building page's "today" chart: uPlot over the headcount samples the page was rendered
// with, extended by each live headcount fragment of the building or a space. Its axis is on the
// building's clock (trend.zone), from the building's midnight (trend.since), wherever the
// viewer is.
(function () {
  "use strict";

  var COLOURS = ["#20303f", "#1b7f3b", "#a86400", "#3367d6", "#b3261e", "#7b1fa2", "#00838f", "#6d4c41"];

  document.addEventListener("DOMContentLoaded", function () {
    var holder = document.getElementById("trend-chart");
    var source = document.getElementById("trend-data");
    if (!holder || !source || typeof uPlot === "undefined") return;
    var trend = JSON.parse(source.textContent);
    var data = trend.data;
    var column = {};
    var series = [{}];
    trend.series.forEach(function (s, n) {
      column[s.id] = n + 1;
      series.push({ label: s.name, stroke: COLOURS[n % COLOURS.length], width: n === 0 ? 2 : 1, spanGaps: true });
    });
    // uPlot takes seconds; its tzDate shows them as a Date on the building's wall clock.
    var onClock = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), trend.zone); };
    var since = document.getElementById("trend-since");
    if (since) since.textContent = uPlot.fmtDate("{HH}:{mm}, {WWW} {D} {MMM}")(onClock(trend.since));
    var chart = new uPlot({
      width: Math.max(280, holder.clientWidth || 480),
      height: 180,
      series: series,
      tzDate: onClock,
      scales: {
        x: { time: true, range: function (u, min, max) { return [trend.since, Math.max(max || 0, trend.since + 3600)]; } },
        y: { range: function (u, min, max) { return [0, Math.max(5, max || 0)]; } },
      },
      legend: { live: false },
    }, data, holder);

    window.addEventListener("resize", function () {
      chart.setSize({ width: Math.max(280, holder.clientWidth), height: 180 });
    });

    function addPoint(entity, at, value) {
      var col = column[entity];
      if (!col || isNaN(at) || isNaN(value)) return;
      var x = Math.floor(at / trend.bucket) * trend.bucket;
      var xs = data[0];
      if (!xs.length || xs[xs.length - 1] < x) {
        xs.push(x);
        for (var n = 1; n < data.length; n++) data[n].push(null);
      } else if (xs[xs.length - 1] > x) {
        return; // older than what the chart shows
      }
      data[col][xs.length - 1] = value;
      chart.setData(data);
    }

    document.addEventListener("htmx:oobAfterSwap", function (event) {
      var el = event.target;
      if (!el || !el.classList || !el.classList.contains("headcount") || !el.dataset.count) return;
      addPoint(el.dataset.entity, Number(el.dataset.at), Number(el.dataset.count));
    });
  });
})();
