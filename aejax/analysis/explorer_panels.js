  // ---- drawing helpers, examples, the loss curve and follow mode (explorer_panels.js, inlined into the page) ----
  /** Size a canvas in CSS pixels, backed by device pixels, and return its cleared context. */
  function fit(canvas, w, h) {
    const r = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * r); canvas.height = Math.round(h * r);
    canvas.style.width = w + "px"; canvas.style.height = h + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(r, 0, 0, r, 0, 0);
    return ctx;
  }

  /** Round tick values (1, 2, 5 times a power of ten) covering [lo, hi]. */
  function ticks(lo, hi, n) {
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw))), e = raw / mag;
    const step = mag * (e >= 7.5 ? 10 : e >= 3.5 ? 5 : e >= 1.5 ? 2 : 1);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }

  /** Ticks of a log axis spanning 10^lo..10^hi: 1, 2, 5 per decade, or plain round values within one decade. */
  function logTicks(lo, hi) {
    if (hi - lo < 1) return ticks(Math.pow(10, lo), Math.pow(10, hi), 4);
    const out = [], mults = hi - lo < 2.5 ? [1, 2, 5] : [1];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) for (const f of mults) {
      const v = f * Math.pow(10, e), t = Math.log10(v);
      if (t >= lo - 1e-9 && t <= hi + 1e-9) out.push(v);
    }
    return out;
  }

  // images: every atlas is decoded once; panels redraw when one arrives
  function atlasImage(atlas) {
    if (!atlas.img) {
      atlas.img = new Image();
      atlas.img.addEventListener("load", () => { drawScatter(); showHover(); showDecoded(); });
      atlas.img.src = atlas.src;
    }
    return atlas.img;
  }
  const vmax = (() => {  // vector data: one bar scale for every example, from the probe inputs
    if (D.kind !== "vector") return 1;
    let m = 0; for (const row of D.probe.values) for (const v of row) if (v !== null) m = Math.max(m, Math.abs(v));
    return m || 1;
  })();

  function drawBars(ctx, values, scale) {
    const n = values.length, slot = BOX / n, mid = BOX / 2, half = BOX / 2 - 16;
    ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(0, mid); ctx.lineTo(BOX, mid); ctx.stroke();
    ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center";
    values.forEach((v, d) => {
      const h = Math.max(-1, Math.min(1, (v || 0) / scale)) * half;
      ctx.fillStyle = "#4c72b0"; ctx.fillRect(d * slot + slot * 0.2, mid - Math.max(h, 0), slot * 0.6, Math.abs(h));
      ctx.fillStyle = "#222"; ctx.fillText(fmt(v, 3), d * slot + slot / 2, v >= 0 ? mid + 12 : mid - 4);
    });
  }

  /** Example i of a source (an image atlas, or {values}) on a canvas: nearest-neighbour scaled, or as bars. */
  function showExample(canvas, source, i, scale) {
    const ctx = fit(canvas, BOX, BOX);
    if (source.values) { drawBars(ctx, source.values[i], scale); return; }
    const img = atlasImage(source);
    if (!img.complete || !img.naturalWidth) return;  // its load event draws it
    const s = Math.min(BOX / source.w, BOX / source.h), w = source.w * s, h = source.h * s;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, (i % source.cols) * source.w, Math.floor(i / source.cols) * source.h, source.w, source.h,
                  (BOX - w) / 2, (BOX - h) / 2, w, h);
  }

  // the loss curve: train and val of the reconstruction term, the baselines dashed, the snapshot's step in red
  const LOSS = { W: three ? 310 : 560, H: three ? 200 : 220, l: 52, r: 14, t: 8, b: 34 };
  function drawLoss() {
    const { W, H } = LOSS, m = LOSS, w = W - m.l - m.r, h = H - m.t - m.b;
    const ctx = fit($("loss-curve"), W, H);
    ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#444";
    const values = D.metrics.flatMap((r) => [r.train, r.val]).filter(ok);
    if (!values.length) { ctx.fillText("no losses in metrics.jsonl", m.l, H / 2); return; }
    // baselines more than 3x beyond the losses would squash the curves: named in the note instead of drawn
    const vlo = Math.min(...values), vhi = Math.max(...values), known = (D.baselines || []).filter((b) => ok(b.value));
    const base = known.filter((b) => b.value <= 3 * vhi && (vlo <= 0 || b.value >= vlo / 3)), off = known.filter((b) => !base.includes(b));
    const all = values.concat(base.map((b) => b.value)), log = all.every((v) => v > 0), tf = (v) => log ? Math.log10(v) : v;
    let lo = Math.min(...all.map(tf)), hi = Math.max(...all.map(tf));
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const pad = 0.04 * (hi - lo); lo -= pad; hi += pad;
    const sMax = Math.max(1, ...D.metrics.map((r) => r.step), ...D.snapshots.map((s) => s.step));
    const X = (st) => m.l + st / sMax * w, Y = (v) => m.t + (hi - tf(v)) / (hi - lo) * h;
    ctx.strokeStyle = "#eee"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of log ? logTicks(lo, hi) : ticks(lo, hi, 4)) {
      ctx.beginPath(); ctx.moveTo(m.l, Y(v)); ctx.lineTo(m.l + w, Y(v)); ctx.stroke();
      ctx.fillText(fmt(v, 3), m.l - 4, Y(v));
    }
    ctx.textBaseline = "top";
    LOSS.xticks = [];  // where each step label went (for tests): none past the canvas' edge
    for (const t of ticks(0, sMax, 5)) {  // a label that would run past the edge is right-aligned to it
      const tw = ctx.measureText(fmt(t)).width, x = X(t), right = Math.min(x + tw / 2, W - 1);
      ctx.textAlign = "right"; ctx.fillText(fmt(t), right, m.t + h + 4);
      LOSS.xticks.push({ text: fmt(t), left: right - tw, right });
    }
    ctx.textAlign = "center"; ctx.fillText("optimizer step", m.l + w / 2, m.t + h + 19);
    ctx.save(); ctx.translate(11, m.t + h / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(log ? "log scale" : "", 0, 0); ctx.restore();
    ctx.strokeStyle = "#888"; ctx.strokeRect(m.l, m.t, w, h);
    ctx.save(); ctx.setLineDash([5, 4]); ctx.lineWidth = 1.2;
    let below = -Infinity;  // labels from the top down, each at least a line below the one before
    const rows = base.map((b) => ({ y: Y(b.value), text: `${b.label}: ${fmt(b.value, 3)}` })).sort((a, b) => a.y - b.y);
    ctx.strokeStyle = "#777";
    for (const { y } of rows) { ctx.beginPath(); ctx.moveTo(m.l, y); ctx.lineTo(m.l + w, y); ctx.stroke(); }
    ctx.restore();
    [["train", "#1f77b4"], ["val", "#ff7f0e"]].forEach(([key, c]) => {
      const pts = D.metrics.filter((r) => ok(r[key]));
      if (!pts.length) return;
      ctx.strokeStyle = c; ctx.fillStyle = c; ctx.lineWidth = 1.5; ctx.beginPath();
      pts.forEach((r, t) => (t ? ctx.lineTo : ctx.moveTo).call(ctx, X(r.step), Y(r[key])));
      ctx.stroke();
      if (pts.length === 1) { ctx.beginPath(); ctx.arc(X(pts[0].step), Y(pts[0][key]), 2.5, 0, 2 * Math.PI); ctx.fill(); }
    });
    ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
    for (const { y, text } of rows) {  // the baselines' labels, over the curves
      below = Math.max(y - 2 < m.t + 11 ? y + 13 : y - 2, below + 12);  // above its line, or below at the top
      ctx.fillStyle = "rgba(255, 255, 255, 0.85)"; ctx.fillRect(m.l + 3, below - 11, ctx.measureText(text).width + 2, 11);
      ctx.fillStyle = "#444"; ctx.fillText(text, m.l + 4, below);
    }
    const x = X(snap().step);
    ctx.strokeStyle = "#d62728"; ctx.lineWidth = 1.5; ctx.beginPath(); ctx.moveTo(x, m.t); ctx.lineTo(x, m.t + h); ctx.stroke();
    const what = D.loss_name === "recon" ? "Reconstruction loss" : "Loss";
    $("loss-title").textContent = `${what}` + (D.header.recon ? ` (${String(D.header.recon).toUpperCase()})` : "");
    $("loss-note").innerHTML = `<b style="color:#1f77b4">—</b> train/${D.loss_name} <b style="color:#ff7f0e">—</b> val/${D.loss_name} ` +
      '<b style="color:#d62728">|</b> this snapshot; losses are means per value' + (base.length ? "; dashed: the loss of outputs that ignore the input, on the probe set" : "") +
      off.map((b) => `; ${b.label}: ${fmt(b.value, 3)} (${b.value > vhi ? "above" : "below"} the chart)`).join("");
  }

  // follow mode (aejax-explore --follow): reload while the run trains, keeping what the reader set
  function setupFollow() {
    const key = "aejax-explorer:" + D.header.run;
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(key) || "null"); } catch (e) { saved = null; }
    if (saved) {
      if (!saved.atLast) state.current = Math.min(saved.current, D.snapshots.length - 1);
      Object.assign(state, { trails: saved.trails, fixed: saved.fixed, manifold: saved.manifold, click: saved.click });
      $("trails-toggle").checked = state.trails; $("fixed-toggle").checked = state.fixed; $("manifold-toggle").checked = state.manifold;
      if (three) { V3.yaw = saved.yaw; V3.pitch = saved.pitch; }
    }
    if (!D.follow) { try { sessionStorage.removeItem(key); } catch (e) { /* storage off: nothing kept */ } return; }
    $("follow-bar").hidden = false;
    $("follow-text").textContent = `The run is still training: this page reloads every ${fmt(D.follow.seconds, 3)} s ` +
      "with its new snapshots (aejax-explore --follow). Untick to stop.";
    setInterval(() => {
      if (!$("follow-toggle").checked) return;
      const keep = { atLast: state.current === D.snapshots.length - 1, current: state.current, trails: state.trails,
                     fixed: state.fixed, manifold: state.manifold, click: state.click, yaw: V3.yaw, pitch: V3.pitch };
      try { sessionStorage.setItem(key, JSON.stringify(keep)); } catch (e) { /* reload without it */ }
      location.reload();
    }, D.follow.seconds * 1000);
  }
