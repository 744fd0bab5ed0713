// A small line chart on a canvas: a few series over the same seconds, the newest on the
// right; the scale grows to the highest value shown. No library.
"use strict";

const COLORS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#862e9c"];

function drawChart(canvas, series, labels) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 36, right = 6, top = 8, bottom = 16;
  const plotW = width - left - right, plotH = height - top - bottom;
  let highest = 0;
  for (const values of series) {
    for (const v of values) if (v !== null && v > highest) highest = v;
  }
  const scale = niceCeiling(highest);
  g.font = "10px system-ui, sans-serif";
  g.fillStyle = "#777";
  g.strokeStyle = "#e3e3e3";
  g.lineWidth = 1;
  for (let i = 0; i <= 2; i++) {
    const y = top + plotH - (plotH * i) / 2;
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + plotW, y); g.stroke();
    g.fillText(trim(scale * i / 2), 2, y + 3);
  }
  const points = series.length ? series[0].length : 0;
  if (points) {
    g.fillText("-" + (points - 1) + "s", left, height - 3);
    g.fillText("now", left + plotW - 18, height - 3);
  }
  series.forEach((values, index) => {
    g.strokeStyle = COLORS[index % COLORS.length];
    g.lineWidth = 1.5;
    g.beginPath();
    let drawing = false;
    values.forEach((v, i) => {
      if (v === null) { drawing = false; return; }
      const x = left + (points > 1 ? (plotW * i) / (points - 1) : plotW);
      const y = top + plotH - (scale ? (plotH * v) / scale : 0);
      if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
      drawing = true;
    });
    g.stroke();
  });
  if (labels) {
    let x = left + 4;
    labels.forEach((label, index) => {
      g.fillStyle = COLORS[index % COLORS.length];
      g.fillText(label, x, top + 9);
      x += g.measureText(label).width + 10;
    });
  }
}

function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function trim(value) {
  return value >= 10 ? value.toFixed(0) : value >= 1 ? value.toFixed(1)
    : value.toPrecision(2);
}
