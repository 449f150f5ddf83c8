  // ---- the decoder at a clicked code (explorer_decode.js, inlined into the page) ----
  // A dense decoder's weights come per snapshot as base64 float32 (kernel [in, out] row-major, bias [out]);
  // the page runs it in float64 at the exact clicked code. Other decoders: the snapshot's decoded grid.
  const ACT = {
    relu: (v) => Math.max(v, 0),
    gelu: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))),  // jax.nn.gelu's default
    silu: (v) => v / (1 + Math.exp(-v)),
    elu: (v) => v > 0 ? v : Math.expm1(v),
    leaky_relu: (v) => v >= 0 ? v : 0.01 * v,
    tanh: Math.tanh,
    sigmoid: (v) => 1 / (1 + Math.exp(-v)),
    identity: (v) => v,
  };
  const f32 = (b64) => { const s = atob(b64), u = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return new Float32Array(u.buffer); };

  function layersOf(s) {
    if (!s.decoder || !D.decoder) return null;
    if (!s._layers) s._layers = s.decoder.w.map((w, l) => ({ w: f32(w), b: f32(s.decoder.b[l]), nin: s.decoder.shapes[l][0], nout: s.decoder.shapes[l][1] }));
    return s._layers;
  }

  /** The decoder of snapshot ``s`` at code ``z``: the output values (after the output activation). */
  function runDecoder(s, z) {
    const layers = layersOf(s), act = ACT[D.decoder.activation];
    let h = Float64Array.from(z);
    layers.forEach((L, l) => {
      const o = Float64Array.from(L.b);
      for (let i = 0; i < L.nin; i++) {
        const v = h[i], row = i * L.nout;
        if (v !== 0) for (let j = 0; j < L.nout; j++) o[j] += v * L.w[row + j];
      }
      if (l < layers.length - 1) for (let j = 0; j < L.nout; j++) o[j] = act(o[j]);
      h = o;
    });
    if (D.decoder.output === "sigmoid") for (let j = 0; j < h.length; j++) h[j] = 1 / (1 + Math.exp(-h[j]));
    return Array.from(h);
  }

  /** Decoded values as an image on an example canvas, shaded as the page's atlases are (explorer._to_uint8). */
  function showValues(canvas, values) {
    const [H, W] = D.shape, C = D.shape.length === 3 ? D.shape[2] : 1, [lo, hi] = D.range;
    const tile = document.createElement("canvas"); tile.width = W; tile.height = H;
    const tctx = tile.getContext("2d"), img = tctx.createImageData(W, H);
    const u8 = (v) => Math.round(Math.min(1, Math.max(0, D.unit_range ? v : (hi > lo ? (v - lo) / (hi - lo) : 0))) * 255);
    for (let p = 0; p < H * W; p++) {
      for (let c = 0; c < 3; c++) img.data[4 * p + c] = u8(values[p * C + (C === 3 ? c : 0)]);
      img.data[4 * p + 3] = 255;
    }
    tctx.putImageData(img, 0, 0);
    const ctx = fit(canvas, BOX, BOX), s = Math.min(BOX / W, BOX / H);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tile, 0, 0, W, H, (BOX - W * s) / 2, (BOX - H * s) / 2, W * s, H * s);
  }

  const nearest = (axis, v) => axis.reduce((best, a, j) => Math.abs(a - v) < Math.abs(axis[best] - v) ? j : best, 0);
  const vec = (a) => "(" + a.map((v) => fmt(v, 3)).join(", ") + ")";

  function showDecoded() {
    const canvas = $("decoded-click"), info = $("decoded-info"), s = snap();
    state.decoded = null;
    if (three) canvas.style.display = "none";  // the decoded point is a cross in the 3-D reconstruction
    const bars = (values) => { if (!three) drawBars(fit(canvas, BOX, BOX), values, vmax); };
    if (D.k !== 2) { canvas.style.display = "none"; info.textContent = `Decoding a clicked point needs a 2-D code; this run's codes are ${D.k}-D.`; return; }
    const exact = !!layersOf(s);
    $("decoder-mode").textContent = exact
      ? "Exact: the page runs this snapshot's decoder (its weights are in the page) at the clicked code."
      : D.decoder ? "This snapshot's decoder weights are not in the page (kept small): the nearest point of its decoded grid."
      : "This run's decoder is not a plain dense network (e.g. conv), so the page cannot run it: it shows the nearest point of the snapshot's decoded grid, computed during training.";
    if (!state.click) { fit(canvas, BOX, BOX); info.textContent = "Click in the latent plane to see what the decoder makes there."; return; }
    const [x, y] = state.click;
    if (exact) {
      state.decoded = runDecoder(s, [x, y]);
      if (D.kind === "image") showValues(canvas, state.decoded); else bars(state.decoded);
      info.textContent = `decoded at z = (${fmt(x)}, ${fmt(y)})` + (D.kind === "vector" ? `: ${vec(state.decoded)}` : "") +
        (three ? " (the black cross in the 3-D reconstruction)" : "");
      return;
    }
    if (!s.grid) { fit(canvas, BOX, BOX); info.textContent = "This snapshot has no decoded grid."; return; }
    const g = s.grid, G = g.z1.length, j = nearest(g.z1, x), i = nearest(g.z2, y);
    if (D.kind === "vector") { state.decoded = g.decoded.values[i * G + j]; bars(state.decoded); }
    else showExample(canvas, g.decoded, i * G + j, vmax);
    const outside = x < Math.min(...g.z1) || x > Math.max(...g.z1) || y < Math.min(...g.z2) || y > Math.max(...g.z2);
    info.textContent = `clicked z = (${fmt(x)}, ${fmt(y)}); decoded at the nearest point (${fmt(g.z1[j])}, ${fmt(g.z2[i])}) ` +
      `of this snapshot's ${G}×${G} grid` + (outside ? " (the click is outside the grid: its nearest edge)" : "") +
      (D.kind === "vector" ? ": " + vec(g.decoded.values[i * G + j]) : "");
  }
