  // ---- 3-D data (explorer_view3d.js, inlined into the page): rotatable views of the probe inputs and of
  // their reconstructions, sharing one camera; hover is linked with the latent scatter ----
  const V3 = { yaw: -0.7, pitch: 0.45, size: 310, drag: null };
  const box3 = (() => {  // a cube around the probe inputs: one scale for every axis, so shapes keep their proportions
    if (!three) return null;
    const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (const p of D.probe.values) p.forEach((v, d) => { if (v !== null) { lo[d] = Math.min(lo[d], v); hi[d] = Math.max(hi[d], v); } });
    const c = lo.map((l, d) => (l + hi[d]) / 2), r = Math.max(1e-9, ...lo.map((l, d) => (hi[d] - l) / 2)) * 1.1;
    return { c, r };
  })();

  /** A data point to [x, y, depth] on a 3-D canvas: orthographic, turned by yaw about the height axis (x3), tilted by pitch. */
  function project3(p) {
    const q = p.map((v, d) => ((v ?? 0) - box3.c[d]) / box3.r);
    const cy = Math.cos(V3.yaw), sy = Math.sin(V3.yaw), cp = Math.cos(V3.pitch), sp = Math.sin(V3.pitch);
    const x = q[0] * cy - q[1] * sy, y = q[0] * sy + q[1] * cy;
    const up = q[2] * cp + y * sp, depth = y * cp - q[2] * sp, s = V3.size * 0.26;
    return [V3.size / 2 + s * x, V3.size / 2 - s * up, depth];
  }

  function drawCube(ctx) {
    const corners = [];
    for (const a of [-1, 1]) for (const b of [-1, 1]) for (const c of [-1, 1])
      corners.push(project3([box3.c[0] + a * box3.r, box3.c[1] + b * box3.r, box3.c[2] + c * box3.r]));
    ctx.strokeStyle = "#ddd"; ctx.lineWidth = 1;
    for (let i = 0; i < 8; i++) for (let j = i + 1; j < 8; j++) if ([1, 2, 4].includes(i ^ j)) {
      ctx.beginPath(); ctx.moveTo(corners[i][0], corners[i][1]); ctx.lineTo(corners[j][0], corners[j][1]); ctx.stroke();
    }
    // axis names beside edges on the outline: x1 and x2 along the bottom edges at the lowest corner, x3 up the leftmost
    const at = (a, b, c) => corners[(a + 1) / 2 * 4 + (b + 1) / 2 * 2 + (c + 1) / 2];
    const sign = [-1, 1];
    let low = [-1, -1], left = [-1, -1, -1];
    for (const a of sign) for (const b of sign) {
      if (at(a, b, -1)[1] > at(...low, -1)[1]) low = [a, b];
      if (at(a, b, -1)[0] < at(...left)[0]) left = [a, b, -1];
    }
    ctx.fillStyle = "#666"; ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    const label = (name, p, q, dx, dy) => ctx.fillText(name, (p[0] + q[0]) / 2 + dx, (p[1] + q[1]) / 2 + dy);
    label("x1", at(...low, -1), at(-low[0], low[1], -1), 0, 12);
    label("x2", at(...low, -1), at(low[0], -low[1], -1), 0, 12);
    label("x3", at(...left), at(left[0], left[1], 1), -12, 0);
  }

  /** One 3-D view: ``values`` (one [x1, x2, x3] per probe point), the hovered point ringed, ``extra`` marked with a cross. */
  function draw3d(canvas, values, extra) {
    const ctx = fit(canvas, V3.size, V3.size);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, V3.size, V3.size);
    drawCube(ctx);
    const pts = values.map((p, i) => [...project3(p), i]).sort((a, b) => b[2] - a[2]);  // far first
    ctx.lineWidth = 0.5; ctx.strokeStyle = "#fff";
    for (const [x, y, , i] of pts) {
      ctx.fillStyle = color(D.labels[i]); ctx.beginPath(); ctx.arc(x, y, 3, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }
    if (state.hover !== null) {
      const [x, y] = project3(values[state.hover]);
      ctx.lineWidth = 2; ctx.strokeStyle = "#000"; ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
    }
    if (extra) {
      const [x, y] = project3(extra);
      ctx.lineWidth = 2.5; ctx.strokeStyle = "#000"; ctx.beginPath();
      ctx.moveTo(x - 6, y - 6); ctx.lineTo(x + 6, y + 6); ctx.moveTo(x + 6, y - 6); ctx.lineTo(x - 6, y + 6); ctx.stroke();
    }
  }

  function draw3dViews() {
    if (!three) return;
    draw3d($("view3d-input"), D.probe.values, null);
    draw3d($("view3d-recon"), snap().recon.values, state.decoded && state.decoded.length === 3 ? state.decoded : null);
  }

  function setup3d() {
    if (!three) { for (const id of ["section-3d-input", "section-3d-recon"]) $(id).remove(); return; }
    document.body.classList.add("three");
    for (const [id, source] of [["view3d-input", () => D.probe.values], ["view3d-recon", () => snap().recon.values]]) {
      const canvas = $(id);
      canvas.addEventListener("mousedown", (e) => { V3.drag = [e.clientX, e.clientY]; e.preventDefault(); });
      canvas.addEventListener("mousemove", (e) => {
        if (V3.drag) return;
        const r = canvas.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
        let best = null, bd = HOVER_PX * HOVER_PX;
        source().forEach((p, i) => {
          const [x, y] = project3(p), d = (x - px) ** 2 + (y - py) ** 2;
          if (d <= bd) { bd = d; best = i; }
        });
        if (best !== null && best !== state.hover) { state.hover = best; redrawHover(); }
      });
    }
    window.addEventListener("mousemove", (e) => {
      if (!V3.drag) return;
      rotate3d(e.clientX - V3.drag[0], e.clientY - V3.drag[1]);
      V3.drag = [e.clientX, e.clientY];
    });
    window.addEventListener("mouseup", () => { V3.drag = null; });
  }

  /** Turn both 3-D views by a drag of (dx, dy) CSS pixels. */
  function rotate3d(dx, dy) {
    V3.yaw += dx * 0.01;
    V3.pitch = Math.max(-1.5, Math.min(1.5, V3.pitch + dy * 0.01));
    draw3dViews();
  }
