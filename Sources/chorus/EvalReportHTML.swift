import Chorus
import ChorusJSON
import Foundation

/// `chorus eval --html FILE`: one self-contained page — the variants' table, a scatter of
/// cost against pass rate (a point per variant, its 95% interval as a bar) and the
/// per-case grid — drawn by inline script from the report's JSON, with no network fetch.
enum EvalReportHTML {
    static func render(_ report: EvalReport) -> String {
        // Every "<" as \u003c: the same JSON, and nothing in it can end or comment out the
        // script element that holds it.
        let data = report.json.text.replacingOccurrences(of: "<", with: "\\u003c")
        let title = "eval \(report.eval.id) — \(report.eval.workflow)"
        return template.replacingOccurrences(of: "{{title}}", with: escape(title)).replacingOccurrences(of: "{{data}}", with: data)
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    private static let template = """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>{{title}}</title>
        <style>
        body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d1d1f; }
        h1 { font-size: 18px; } h2 { font-size: 15px; margin-top: 28px; }
        table { border-collapse: collapse; }
        th, td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #e5e5e5; white-space: nowrap; }
        th:first-child, td:first-child { text-align: left; }
        tr.best td { font-weight: 600; }
        svg text { font: 12px system-ui, sans-serif; }
        .grid td.cell { width: 18px; height: 14px; padding: 0; border: 1px solid #fff; }
        .cell.pass { background: #34a853; } .cell.fail { background: #ea4335; } .cell.none { background: #ddd; }
        .grid th { font-weight: normal; font-size: 12px; }
        .note { color: #666; font-size: 12px; }
        </style>
        </head>
        <body>
        <h1 id="title"></h1>
        <p class="note" id="subtitle"></p>
        <h2>Variants</h2>
        <table id="variants"></table>
        <h2>Cost against pass rate</h2>
        <svg id="scatter" width="640" height="360" role="img" aria-label="cost against pass rate, one point per variant"></svg>
        <h2>Cases</h2>
        <p class="note">Green passed, red failed; hover a cell for why, and the run to look at with chorus runs show.</p>
        <table class="grid" id="grid"></table>
        <script type="application/json" id="eval-data">{{data}}</script>
        <script>
        "use strict";
        const data = JSON.parse(document.getElementById("eval-data").textContent);
        const el = (tag, attrs, text) => {
          const node = document.createElementNS(tag === "svg" || ["circle", "line", "text", "g", "title"].includes(tag) ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
          for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
          if (text !== undefined) node.textContent = text;
          return node;
        };
        const dollars = v => v >= 0.01 ? "$" + v.toFixed(4) : v === 0 ? "$0" : "$" + v.toFixed(6);
        const pct = v => (v * 100).toFixed(1) + "%";
        document.getElementById("title").textContent = "Eval " + data.eval_id + " of " + data.workflow;
        document.getElementById("subtitle").textContent = data.cases + " cases from " + data.cases_path + " × " + data.variants.length +
          " variants; status " + data.status + (data.source_eval_id ? "; re-graded from eval " + data.source_eval_id : "");

        const table = document.getElementById("variants");
        const head = el("tr");
        const routed = data.variants.some(v => v.routes_graded > 0);
        for (const h of ["variant", "swaps", "pass rate", "95% CI"].concat(routed ? ["route acc."] : [], ["cost", "$/case", "vs best", "tokens in/out", "p50", "p95", "escalated"])) head.appendChild(el("th", {}, h));
        table.appendChild(head);
        for (const v of data.variants) {
          const row = el("tr", {class: "variant-row" + (v.name === data.best_variant ? " best" : "")});
          const swaps = Object.entries(v.swaps).map(([a, b]) => a + "→" + b).join(", ") || "as the files say";
          const cells = [v.name + (v.name === data.best_variant ? " ★" : ""), swaps, pct(v.pass_rate) + " (" + v.passed + "/" + v.cases + ")",
            pct(v.ci95[0]) + "–" + pct(v.ci95[1])].concat(routed ? [v.route_accuracy === null ? "-" : pct(v.route_accuracy) + " (" + v.routes_right + "/" + v.routes_graded + ")"] : [],
            [dollars(v.cost_usd), dollars(v.cost_per_case_usd),
            v.cost_relative_to_best === null ? "-" : v.cost_relative_to_best.toFixed(2) + "×", v.tokens_in + "/" + v.tokens_out,
            Math.round(v.latency_p50_ms) + " ms", Math.round(v.latency_p95_ms) + " ms", pct(v.escalation_rate)]);
          for (const c of cells) row.appendChild(el("td", {}, c));
          table.appendChild(row);
        }

        const svg = document.getElementById("scatter");
        const W = 640, H = 360, padLeft = 64, padRight = 24, padTop = 16, padBottom = 44;
        const maxCost = Math.max(...data.variants.map(v => v.cost_usd), 1e-9) * 1.15;
        const x = c => padLeft + (W - padLeft - padRight) * c / maxCost;
        const y = r => padTop + (H - padTop - padBottom) * (1 - r);
        svg.appendChild(el("line", {x1: padLeft, y1: y(0), x2: W - padRight, y2: y(0), stroke: "#999"}));
        svg.appendChild(el("line", {x1: padLeft, y1: y(0), x2: padLeft, y2: y(1), stroke: "#999"}));
        for (const r of [0, 0.25, 0.5, 0.75, 1]) {
          svg.appendChild(el("text", {x: padLeft - 8, y: y(r) + 4, "text-anchor": "end"}, pct(r)));
          svg.appendChild(el("line", {x1: padLeft, y1: y(r), x2: W - padRight, y2: y(r), stroke: "#eee"}));
        }
        for (const f of [0, 0.5, 1]) svg.appendChild(el("text", {x: x(maxCost * f / 1.15), y: H - padBottom + 18, "text-anchor": "middle"}, dollars(maxCost * f / 1.15)));
        svg.appendChild(el("text", {x: (W + padLeft) / 2, y: H - 6, "text-anchor": "middle"}, "total cost of the eval"));
        const colours = ["#4285f4", "#34a853", "#ea4335", "#fbbc05", "#9c27b0", "#00acc1", "#795548"];
        data.variants.forEach((v, i) => {
          const g = el("g", {class: "point-group"});
          g.appendChild(el("line", {x1: x(v.cost_usd), x2: x(v.cost_usd), y1: y(v.ci95[0]), y2: y(v.ci95[1]), stroke: colours[i % 7], "stroke-width": 2}));
          const dot = el("circle", {class: "point", cx: x(v.cost_usd), cy: y(v.pass_rate), r: 6, fill: colours[i % 7]});
          dot.appendChild(el("title", {}, v.name + ": " + pct(v.pass_rate) + " at " + dollars(v.cost_usd)));
          g.appendChild(dot);
          g.appendChild(el("text", {x: x(v.cost_usd) + 9, y: y(v.pass_rate) + 4}, v.name));
          svg.appendChild(g);
        });

        const grid = document.getElementById("grid");
        const header = el("tr");
        header.appendChild(el("th", {}, "case"));
        for (const v of data.variants) header.appendChild(el("th", {}, v.name));
        grid.appendChild(header);
        for (const c of data.per_case) {
          const row = el("tr", {class: "case-row"});
          row.appendChild(el("td", {}, c.id));
          for (const v of data.variants) {
            const r = c.results[v.name];
            const cell = el("td", {class: "cell " + (r ? (r.passed ? "pass" : "fail") : "none")});
            cell.title = r ? (r.passed ? "passed" : "failed: " + (r.reason || "")) + (r.run_id ? "\\nrun " + r.run_id : "") + "\\n" + dollars(r.cost_usd) : "not run";
            row.appendChild(cell);
          }
          grid.appendChild(row);
        }
        document.body.setAttribute("data-variants", String(data.variants.length));
        document.body.setAttribute("data-cases", String(data.per_case.length));
        document.body.setAttribute("data-ready", "1");
        </script>
        </body>
        </html>
        """
}
