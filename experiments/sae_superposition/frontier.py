"""The sae_superposition study's table and figure from its run directories.

    python experiments/sae_superposition/frontier.py multirun/sae_superposition/<time> [more dirs ...]

Prints a markdown table (variant, k or L0 coefficient, dictionary size, test/l0, test/fvu,
test/mmcs, test/recovered_fraction, test/dead_fraction) and writes ``frontier.png`` here: the
L0-FVU frontier and the recovery of the true features against L0, one line per variant and
dictionary size.
"""
from __future__ import annotations

import sys
from pathlib import Path

from aejax.rundir import find_runs, read_config, read_summary

HERE = Path(__file__).resolve().parent
COLUMNS = ("test/l0", "test/fvu", "test/mmcs", "test/recovered_fraction", "test/dead_fraction")


def rows(roots: list[Path]) -> list[dict]:
    out = []
    for root in roots:
        for run in find_runs(root):
            s, cfg = read_summary(run), read_config(run)
            if cfg is None or "test/l0" not in s:
                continue
            v = cfg.variant
            knob = f"k={v.k}" if v.code in ("topk", "batchtopk") else f"l0 weight={v.terms.l0.weight:g}"
            out.append({"variant": v.name, "knob": knob, "latents": cfg.model.latent_dim,
                        **{c: s[c] for c in COLUMNS}})
    return sorted(out, key=lambda r: (r["variant"], r["latents"], r["test/l0"]))


def table(rs: list[dict]) -> str:
    head = "| variant | sparsity | latents | L0 | FVU | MMCS | recovered > 0.9 | dead |"
    lines = [head, "|" + "---|" * 8]
    for r in rs:
        lines.append(f"| {r['variant']} | {r['knob']} | {r['latents']} | {r['test/l0']:.2f} | {r['test/fvu']:.3f} | "
                     f"{r['test/mmcs']:.3f} | {r['test/recovered_fraction']:.1%} | {r['test/dead_fraction']:.1%} |")
    return "\n".join(lines)


def figure(rs: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    variants = sorted({r["variant"] for r in rs})
    markers = {256: "s", 512: "o", 1024: "^"}
    for (variant, latents) in sorted({(r["variant"], r["latents"]) for r in rs}):
        g = [r for r in rs if (r["variant"], r["latents"]) == (variant, latents)]
        style = dict(marker=markers.get(latents, "x"), color=f"C{variants.index(variant)}", ls="-" if len(g) > 1 else "",
                     ms=7, label=f"{variant}, {latents} latents")
        left.plot([r["test/l0"] for r in g], [r["test/fvu"] for r in g], **style)
        right.plot([r["test/l0"] for r in g], [r["test/mmcs"] for r in g], **style)
    left.set(xlabel="L0 (active latents per example, test)", ylabel="FVU (test)", yscale="log",
             title="sparsity against reconstruction")
    right.axhline(0.9, color="grey", ls=":")
    right.set(xlabel="L0 (active latents per example, test)", ylabel="MMCS to the 256 true features",
              title="feature recovery")
    right.legend(fontsize=7)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


def main() -> None:
    rs = rows([Path(a) for a in sys.argv[1:]])
    print(table(rs))
    figure(rs, HERE / "frontier.png")
    print("wrote", HERE / "frontier.png")


if __name__ == "__main__":
    main()
