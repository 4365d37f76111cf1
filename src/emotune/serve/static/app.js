// emotune web page: send a photo (file, drop or webcam frame) to POST /v1/analyze and draw what comes back.
// Plain JavaScript, served by emotune itself: no framework, no CDN.
"use strict";

const COLORS = [[230, 60, 60], [150, 90, 200], [120, 120, 120], [255, 200, 0], [80, 200, 120], [60, 120, 230], [255, 120, 20], [0, 200, 200]];
const $ = (id) => document.getElementById(id);
const canvas = $("canvas"), ctx = canvas.getContext("2d"), video = $("video");
let labels = [], busy = false, stream = null;

const rgb = (c, a = 1) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;
const colorOf = (label) => COLORS[Math.max(0, labels.indexOf(label)) % COLORS.length];

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models");
    const info = await r.json();
    const m = info.models[0];
    labels = m.labels;
    $("model").textContent = `model ${m.id} (${m.backbone}, ${m.version}) · ${m.labels.length} classes · ${m.backend}`;
    for (const d of info.detectors) {
      const o = document.createElement("option");
      o.value = o.textContent = d;
      o.selected = d === info.default_detector;
      $("detector").append(o);
    }
  } catch (e) {
    $("model").textContent = "model information unavailable";
  }
}

async function analyze(blob, name) {
  if (busy) return;
  busy = true;
  document.body.dataset.state = "busy";
  const form = new FormData();
  form.append("file", blob, name || "image.jpg");
  form.append("detector", $("detector").value || "");
  form.append("tta", $("tta").checked ? "true" : "false");
  const t0 = performance.now();
  try {
    const r = await fetch("/v1/analyze", { method: "POST", body: form });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    window.emotuneLast = body;
    const ms = Math.round(performance.now() - t0);
    status(`${body.faces.length} face(s) in ${body.image.width}×${body.image.height} · ${ms} ms`);
    return body;
  } catch (e) {
    window.emotuneLast = null;
    status(e.message, true);
    document.body.dataset.state = "error";
    throw e;
  } finally {
    busy = false;
  }
}

function drawResult(source, result) {
  canvas.width = result.image.width;
  canvas.height = result.image.height;
  ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
  const s = Math.max(1, Math.min(canvas.width, canvas.height) / 500);
  const font = Math.round(12 * s), line = Math.max(2, Math.round(2 * s));
  ctx.font = `${font}px system-ui, sans-serif`;
  result.faces.forEach((f, i) => {
    const c = colorOf(f.label), b = f.box;
    ctx.lineWidth = line;
    ctx.strokeStyle = rgb(c);
    ctx.strokeRect(b.x, b.y, b.w, b.h);
    // label tag above the box
    const tag = `${i + 1} ${f.label} ${f.probs[f.label].toFixed(2)}`;
    const tw = ctx.measureText(tag).width + 8, th = font + 6;
    const ty = b.y - th >= 0 ? b.y - th : b.y + b.h;
    ctx.fillStyle = rgb(c);
    ctx.fillRect(b.x, ty, tw, th);
    ctx.fillStyle = "#000";
    ctx.fillText(tag, b.x + 4, ty + font);
    // probability bars beside the box (right side if there is room, else left, clamped to the image)
    const names = Object.keys(f.probs), rowH = font + 4, labW = 5.5 * font, barW = 6 * font;
    const panelW = labW + barW + 8, panelH = names.length * rowH + 6;
    let px = b.x + b.w + 6;
    if (px + panelW > canvas.width) px = Math.max(0, b.x - panelW - 6);
    const py = Math.min(Math.max(0, b.y), Math.max(0, canvas.height - panelH));
    ctx.fillStyle = "rgba(255,255,255,0.82)";
    ctx.fillRect(px, py, panelW, panelH);
    names.forEach((n, k) => {
      const y = py + 3 + k * rowH;
      ctx.fillStyle = "#111";
      ctx.fillText(n, px + 4, y + font - 2);
      ctx.fillStyle = rgb(colorOf(n));
      ctx.fillRect(px + labW, y + 2, Math.max(1, f.probs[n] * barW), rowH - 5);
    });
  });
  fillTable(result);
  document.body.dataset.state = "done";
  document.body.dataset.faces = String(result.faces.length);
}

function fillTable(result) {
  const tbody = $("faces").querySelector("tbody");
  tbody.replaceChildren();
  result.faces.forEach((f, i) => {
    const tr = document.createElement("tr");
    tr.className = "face";
    const bars = document.createElement("div");
    bars.className = "bars";
    for (const [n, p] of Object.entries(f.probs).sort((a, b) => b[1] - a[1])) {
      const name = document.createElement("span"), bar = document.createElement("div"), val = document.createElement("span");
      name.textContent = n;
      bar.className = "bar";
      bar.style.width = `${Math.max(1, p * 100)}%`;
      bar.style.background = rgb(colorOf(n));
      val.textContent = p.toFixed(3);
      bars.append(name, bar, val);
    }
    const cells = [String(i + 1), null, bars, `${f.box.x}, ${f.box.y}, ${f.box.w}, ${f.box.h}`, f.score.toFixed(3)];
    cells.forEach((v, k) => {
      const td = document.createElement("td");
      if (k === 1) {
        td.className = "label";
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = rgb(colorOf(f.label));
        td.append(sw, document.createTextNode(f.label));
      } else if (v instanceof Node) td.append(v);
      else td.textContent = v;
      tr.append(td);
    });
    tbody.append(tr);
  });
  if (!result.faces.length) {
    const tr = document.createElement("tr");
    tr.innerHTML = '<td colspan="5" class="muted">no face found</td>';
    tbody.append(tr);
  }
}

async function handleFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    status(`${file.name}: not an image (${file.type})`, true);
    return;
  }
  status(`analysing ${file.name}…`);
  let img;
  try {
    img = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (e) {
    img = null; // the browser cannot show it: the server may still read it (TIFF): its answer says
  }
  try {
    const result = await analyze(file, file.name);
    if (result) drawResult(img || blankOf(result), result);
  } catch (e) { /* shown in the status line */ }
}

function blankOf(result) {
  const c = document.createElement("canvas");
  c.width = result.image.width;
  c.height = result.image.height;
  return c;
}

// ---- file input and drag & drop ----
$("file").addEventListener("change", (e) => handleFile(e.target.files[0]));
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => handleFile(e.dataTransfer.files[0]));

// ---- webcam ----
async function snapFrame() {
  if (!stream || busy) return;
  const frame = document.createElement("canvas");
  frame.width = video.videoWidth;
  frame.height = video.videoHeight;
  frame.getContext("2d").drawImage(video, 0, 0);
  const blob = await new Promise((res) => frame.toBlob(res, "image/jpeg", 0.9));
  try {
    const result = await analyze(blob, "webcam.jpg");
    if (result) drawResult(frame, result);
  } catch (e) { /* shown */ }
  if ($("live").checked && stream) requestAnimationFrame(snapFrame);
}

$("webcam").addEventListener("click", async () => {
  if (stream) {
    stream.getTracks().forEach((t) => t.stop());
    stream = null;
    $("webcam").textContent = "Use webcam";
    $("snap").disabled = $("live").disabled = true;
    $("live").checked = false;
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (e) {
    status(`webcam unavailable: ${e.message}`, true);
    return;
  }
  video.srcObject = stream;
  await video.play();
  $("webcam").textContent = "Stop webcam";
  $("snap").disabled = $("live").disabled = false;
  status("webcam on: analyse a frame, or tick live");
});
$("snap").addEventListener("click", snapFrame);
$("live").addEventListener("change", () => { if ($("live").checked) snapFrame(); });

loadModels();
