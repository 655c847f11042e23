// tunegate's release dashboard: hash routes over the JSON views of tunegate/serving/dashboard.py.
// No library: the DOM is built with el(), every datum goes in as text, charts are SVG.
// The admin token and the API key live in variables of this closure only: not in the
// page, not in localStorage, sessionStorage or a cookie; closing the tab forgets them.
(function () {
  "use strict";
  const SITE = window.TUNEGATE_SITE || { mode: "static" };
  const LIVE = SITE.mode === "live";
  let adminToken = null;
  let apiKey = null;
  const page = document.getElementById("page");
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  const num = (x, d = 3) => (typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(d)) : x === null || x === undefined ? "—" : String(x));
  const pct = (a, b) => (b ? (100 * a / b).toFixed(1) + "%" : "—");
  const badge = (text) => el("span", { class: "badge " + String(text).replace(/[^a-z_]/gi, "") }, text);
  const table = (head, rows, rowAttrs) => el("table", {}, el("tr", {}, head.map((h) => el("th", {}, h))),
    rows.map((r, i) => el("tr", rowAttrs ? rowAttrs(i) : {}, r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))))));
  const link = (href, text) => el("a", { href }, text);
  // a check's outcome: passed, failed, or undecided (not enough evidence); older records have only `passed`
  const outcomeOf = (c) => c.outcome || (c.passed ? "passed" : "failed");

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function getJSON(path) {
    if (!LIVE) {
      if (!(path in SITE)) throw new HttpError(404, "not in this snapshot: " + path);
      return SITE[path];
    }
    const headers = apiKey ? { Authorization: "Bearer " + apiKey } : {};
    const r = await fetch(path, { headers });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new HttpError(r.status, (body.error && body.error.message) || r.statusText);
    return body;
  }

  async function admin(path, body) {
    const headers = { "Content-Type": "application/json" };
    if (adminToken) headers.Authorization = "Bearer " + adminToken;
    const r = await fetch(new URL("../" + path, location.href), { method: "POST", headers, body: JSON.stringify(body) });
    const out = await r.json().catch(() => ({}));
    if (!r.ok) throw new HttpError(r.status, (out.error && out.error.message) || r.statusText);
    return out;
  }

  function source(text) { document.getElementById("source").textContent = text ? "Source: " + text : ""; }

  // -- charts -----------------------------------------------------------------------------
  function thresholdOf(text) {
    const m = /(<=|>=|<|>|==)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)/.exec(String(text || ""));
    return m ? Number(m[2]) : null;
  }

  function intervalChart(check) {
    const v = check.value, ci = Array.isArray(check.ci) ? check.ci : null, t = thresholdOf(check.threshold);
    if (typeof v !== "number" || (!ci && t === null)) return "—"; // nothing to draw it against
    const xs = [v, ...(ci || []), ...(t === null ? [] : [t])].filter((x) => typeof x === "number");
    let lo = Math.min(...xs), hi = Math.max(...xs);
    const pad = (hi - lo) * 0.15 || Math.abs(hi) * 0.1 || 0.05;
    lo -= pad; hi += pad;
    const W = 240, H = 34, x = (a) => 8 + (W - 16) * (a - lo) / (hi - lo);
    const colour = { passed: "#1f7a33", failed: "#b01c1c", undecided: "#b26a00" }[outcomeOf(check)];
    const g = svg("svg", { width: W, height: H, class: "interval", "data-check": check.name, role: "img" });
    g.append(svg("title", {}, `${check.name}: ${num(v)}` + (ci ? ` [${num(ci[0])}, ${num(ci[1])}]` : "") + ` threshold ${check.threshold}`));
    g.append(svg("line", { x1: 8, x2: W - 8, y1: 22, y2: 22, stroke: "#ccd" }));
    if (t !== null) {
      g.append(svg("line", { x1: x(t), x2: x(t), y1: 4, y2: 30, stroke: "#555", "stroke-dasharray": "3,2", class: "threshold" }));
      const right = x(t) > W / 2;  // the label on the side with room
      g.append(svg("text", { x: right ? x(t) - 3 : x(t) + 3, y: 10, "text-anchor": right ? "end" : "start" }, String(check.threshold)));
    }
    if (ci) g.append(svg("line", { x1: x(ci[0]), x2: x(ci[1]), y1: 22, y2: 22, stroke: colour, "stroke-width": 3, class: "ci" }));
    g.append(svg("circle", { cx: x(v), cy: 22, r: 4, fill: colour, class: "value" }));
    return g;
  }

  function timeline(name, points, triggers) {
    const W = 560, H = 110, L = 40, R = 10, T = 10, B = 24;
    const scores = points.map((p) => p.score).filter((s) => typeof s === "number");
    const thr = points.map((p) => p.threshold).filter((s) => typeof s === "number");
    let lo = Math.min(0, ...scores, ...thr), hi = Math.max(1, ...scores, ...thr);
    const times = points.map((p) => Date.parse(p.time));
    const t0 = Math.min(...times), t1 = Math.max(...times);
    const x = (t) => (t1 > t0 ? L + (W - L - R) * (t - t0) / (t1 - t0) : L + (W - L - R) / 2);
    const y = (s) => T + (H - T - B) * (1 - (s - lo) / (hi - lo));
    const g = svg("svg", { width: W, height: H, class: "timeline", "data-signal": name, role: "img" });
    g.append(svg("title", {}, `${name} over ${points.length} reports`));
    g.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#ccd" }));
    g.append(svg("text", { x: 2, y: y(hi) + 8 }, num(hi, 2)), svg("text", { x: 2, y: y(lo) }, num(lo, 2)));
    const last = points[points.length - 1];
    if (typeof last.threshold === "number") {
      g.append(svg("line", { x1: L, x2: W - R, y1: y(last.threshold), y2: y(last.threshold), stroke: "#555", "stroke-dasharray": "3,2", class: "threshold" }));
    }
    for (const tr of triggers) {
      const at = Date.parse(tr.time);
      if (at >= t0 && at <= t1 + 1) g.append(svg("line", { x1: x(at), x2: x(at), y1: T, y2: H - B, stroke: "#b36b00", "stroke-width": 2, class: "trigger" }, svg("title", {}, "retraining: " + (tr.why || ""))));
    }
    const drawn = points.filter((p) => typeof p.score === "number");
    if (drawn.length > 1) g.append(svg("polyline", { points: drawn.map((p) => `${x(Date.parse(p.time))},${y(p.score)}`).join(" "), fill: "none", stroke: "#6a7" }));
    for (const p of drawn) {
      const colour = p.drifted === true ? "#b01c1c" : p.drifted === false ? "#1f7a33" : "#999";
      g.append(svg("circle", { cx: x(Date.parse(p.time)), cy: y(p.score), r: 4, fill: colour, class: p.drifted ? "point drifted" : "point" }, svg("title", {}, `${p.time}: ${num(p.score)} (threshold ${num(p.threshold)})`)));
    }
    const shown = (t) => t.slice(0, 19).replace("T", " ");
    g.append(svg("text", { x: L, y: H - 6 }, shown(points[0].time)), svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, shown(last.time)));
    return g;
  }

  // -- pages ------------------------------------------------------------------------------
  async function releasesPage() {
    const data = await getJSON("api/releases.json");
    source(data.source);
    const versions = data.releases.map((r) => r.version);
    const stageRows = data.stages.map((s) => [s.stage, s.version ? link("#/release/" + encodeURIComponent(s.version), s.version) : "—",
      el("td", { class: "num traffic", "data-stage": s.stage }, s.traffic + "%"), s.verdict ? badge(s.verdict) : "—", s.since || "—", s.by || "—", s.reason || ""]);
    const pickA = el("select", { id: "compare-a" }, versions.map((v) => el("option", {}, v)));
    const pickB = el("select", { id: "compare-b" }, versions.map((v, i) => el("option", i === 1 ? { selected: true } : {}, v)));
    const out = [
      el("h1", {}, `Releases of ${data.artifact}`),
      table(["stage", "version", "traffic", "gate", "since", "by", "reason"], stageRows),
      LIVE ? adminPanel(versions) : el("p", { class: "note" }, "A snapshot (tunegate ui build): promote and roll back with `tunegate promote` / `tunegate rollback`."),
      el("h2", {}, "Registered releases"),
      table(["version", "model", "gate", "registered"], data.releases.map((r) => [link("#/release/" + encodeURIComponent(r.version), r.version), r.model_id, badge(r.verdict), r.registered_at])),
      el("p", {}, "Compare ", pickA, " with ", pickB, " ", el("button", { onclick: () => { location.hash = `#/compare/${encodeURIComponent(pickA.value)}/${encodeURIComponent(pickB.value)}`; } }, "Compare")),
      el("h2", {}, "Audit trail"),
      table(["time", "action", "stage", "version", "weight", "by", "reason"], data.audit.map((e) => [e.time, e.action,
        e.stage, e.version, e.weight === null || e.weight === undefined ? "" : e.weight + "%", e.by,
        el("td", {}, e.forced ? el("span", { class: "forced-mark" }, "FORCED ") : null, e.judge ? el("span", { class: "badge wait" }, "judge") : null, " ", e.reason)]),
        (i) => ({ class: data.audit[i].forced ? "forced" : null })),
    ];
    page.replaceChildren(...out);
  }

  function adminPanel(versions) {
    const result = el("div", { id: "admin-result" });
    const version = el("select", { id: "promote-version" }, versions.map((v) => el("option", {}, v)));
    const stage = el("select", { id: "promote-stage" }, ["staging", "canary", "production"].map((s) => el("option", {}, s)));
    const weight = el("input", { id: "promote-weight", type: "number", min: 1, max: 99, placeholder: "canary %", size: 6 });
    const reason = el("input", { id: "promote-reason", placeholder: "reason", size: 24 });
    const act = async (path, body, what) => {
      result.replaceChildren(el("span", {}, what + "…"));
      try {
        const out = await admin(path, body);
        await releasesPage();
        document.getElementById("admin-result").replaceChildren(el("div", { class: "message ok" }, out.result || "done"));
      } catch (err) {
        result.replaceChildren(el("div", { class: "message error" }, `refused (${err.status || "network"}): ${err.message}`));
      }
    };
    return el("div", { class: "admin" },
      el("strong", {}, "Admin "), el("span", {}, adminToken ? "(token held in this tab)" : "(enter the admin token above first)"), el("br"),
      version, " to ", stage, " ", weight, " ", reason, " ",
      el("button", { id: "promote", onclick: () => act("admin/promote", { version: version.value, stage: stage.value, weight: weight.value ? Number(weight.value) : null, reason: reason.value }, "promoting") }, "Promote"),
      " ", el("button", { id: "rollback-canary", onclick: () => act("admin/rollback", { stage: "canary", reason: reason.value }, "withdrawing the canary") }, "Withdraw canary"),
      " ", el("button", { id: "rollback-production", onclick: () => act("admin/rollback", { stage: "production", reason: reason.value }, "rolling back production") }, "Roll back production"),
      result);
  }

  function checksTable(checks) {
    return table(["", "check", "metric", "value", "interval", "threshold", "interval vs threshold"], checks.map((c) => [
      badge({ passed: "pass", failed: "fail", undecided: "not_enough_evidence" }[outcomeOf(c)]), c.name, c.metric || "", el("td", { class: "num" }, num(c.value)),
      Array.isArray(c.ci) ? `[${num(c.ci[0])}, ${num(c.ci[1])}]` : "—", c.threshold || "", el("td", {}, intervalChart(c))]),
      (i) => ({ class: "check", "data-check": checks[i].name }));
  }

  function blocksOf(blocks) {
    return blocks.flatMap((b) => (b.header && b.header.length ? [b.text ? el("p", {}, b.text) : null, table(b.header, b.rows)] : [el("p", {}, b.text)])).filter(Boolean);
  }

  async function releasePage(version) {
    const r = await getJSON(`api/release/${encodeURIComponent(version)}.json`);
    source(r.source || "registry");
    const out = [el("h1", {}, `Release ${r.version} `, badge(r.verdict)), el("p", {}, `${r.model_id}, registered ${r.registered_at}`)];
    for (const n of r.notes) out.push(el("p", { class: "note" }, n));
    if (r.gate) {
      const b = r.gate.baseline || {};
      const against = b.version ? link("#/release/" + encodeURIComponent(b.version), b.version) : (b.model_id || "—");
      out.push(el("p", { id: "summary" }, r.gate.summary), el("p", {}, `Judged against the ${b.kind || "?"} model `, against,
        b.version ? [" (", link(`#/compare/${encodeURIComponent(b.version)}/${encodeURIComponent(r.version)}`, "compare"), ")"] : ""));
      out.push(el("h2", {}, `Gate checks (${r.gate.checks.length})`), checksTable(r.gate.checks));
    }
    out.push(el("h2", {}, "Largest regressions"), ...(r.regressions.length ? blocksOf(r.regressions) : [el("p", {}, "none packaged")]));
    if (r.card) {
      const c = r.card, base = c.base_model || {};
      out.push(el("h2", {}, "Card"), table(["", ""], [["base model", `${base.hub_id || ""} ${base.model_id || ""}`], ["license", c.license || "—"],
        ["method", c.method || "—"], ["trained", c.created_at || "—"], ["git revision", c.git_revision || "—"]]),
      el("details", {}, el("summary", {}, `data (${Object.keys(c.data).length} files, sha256)`), table(["file", "sha256"], Object.entries(c.data))),
      el("details", {}, el("summary", {}, "params"), el("pre", {}, JSON.stringify(c.params, null, 2))));
    }
    page.replaceChildren(...out);
  }

  async function comparePage(a, b) {
    const [ra, rb] = await Promise.all([getJSON(`api/release/${encodeURIComponent(a)}.json`), getJSON(`api/release/${encodeURIComponent(b)}.json`)]);
    source("the two releases' packaged gate records");
    const ca = Object.fromEntries(((ra.gate || {}).checks || []).map((c) => [c.name, c]));
    const cb = Object.fromEntries(((rb.gate || {}).checks || []).map((c) => [c.name, c]));
    const names = [...new Set([...Object.keys(ca), ...Object.keys(cb)])].filter((n) => !n.includes("_vs_"));
    const cell = (c) => (c ? `${num(c.value)}${Array.isArray(c.ci) ? ` [${num(c.ci[0])}, ${num(c.ci[1])}]` : ""}` : "—");
    const out = [el("h1", {}, `${a} vs ${b}`), el("h2", {}, "Same suites, side by side"),
      table(["check", a, b], names.map((n) => [n, cell(ca[n]), cell(cb[n])]))];
    const judged = rb.gate && rb.gate.baseline.version === a ? rb : ra.gate && ra.gate.baseline.version === b ? ra : null;
    out.push(el("h2", {}, "Paired deltas"));
    if (judged) {
      const pairs = judged.gate.checks.filter((c) => c.name.includes("_vs_"));
      out.push(el("p", { id: "paired-source" }, `As the gate computed them when ${judged.version} was judged against ${judged.gate.baseline.version} (same items, candidate minus baseline):`), checksTable(pairs));
    } else {
      out.push(el("p", { id: "paired-source", class: "note" }, "Neither release was judged against the other, so the gate computed no paired deltas between them; the values above come from separate evaluations."));
    }
    page.replaceChildren(...out);
  }

  function traffic(t) {
    if (!t) return ["—", "—", "—", "—", "—", "—"];
    const p95 = Object.entries(t.latency || {}).map(([e, l]) => `${e} ${num(l.p95_ms, 0)} ms`).join(", ") || "—";
    return [num(t.requests), num(t.callers), pct(t.errors, t.weight), p95, pct(t.invalid, t.classify), pct(t.abstained, t.classify)];
  }

  async function canaryPage() {
    const v = await getJSON("api/canary.json");
    source(v.source);
    const out = [el("h1", {}, "Canary")];
    if (!v.canary) out.push(el("p", { id: "canary-state" }, "No canary in flight."));
    else out.push(el("p", { id: "canary-state" }, `${v.canary.version} at ${v.canary.weight}% since ${v.canary.at}` + (v.production ? `, against production ${v.production.version}` : ", no production yet")));
    if (v.note) out.push(el("p", { class: "note" }, v.note));
    const d = v.decision;
    if (d) {
      const m = d.metrics || {};
      out.push(el("h2", {}, "The judge now (dry run) ", badge(d.action), d.weight ? ` to ${d.weight}%` : ""), el("ul", { id: "reasons" }, d.reasons.map((r) => el("li", {}, r))));
      out.push(table(["release", "requests", "callers", "error rate", "p95", "invalid", "abstained"], [
        ["canary", ...traffic(m.canary)], ["production", ...traffic(m.production)]]));
      const ag = m.agreement;
      out.push(el("p", { id: "agreement" }, ag ? `Agreement on shadow pairs: ${num(ag.agree)}/${ag.pairs} = ${pct(ag.agree, ag.pairs)} (confidence sequence ${pct(ag.ci[0], 1)} to ${pct(ag.ci[1], 1)}; minimum ${pct(v.limits.min_agreement, 1)})` : "Agreement on shadow pairs: fewer than 20 pairs, not judged yet."));
    }
    out.push(el("h2", {}, "Limits"), table(["limit", "value"], Object.entries(v.limits || {}).map(([k, x]) => [k, Array.isArray(x) ? x.join(", ") : num(x)])));
    out.push(el("h2", {}, "The judge's decisions"), v.history.length ? table(["time", "action", "stage", "version", "weight", "reason"],
      v.history.map((e) => [e.time, e.action, e.stage, e.version, e.weight === null || e.weight === undefined ? "" : e.weight + "%", e.reason])) : el("p", {}, "none yet"));
    page.replaceChildren(...out);
  }

  async function driftPage() {
    const v = await getJSON("api/drift.json");
    source(v.source);
    const out = [el("h1", {}, `Drift (${v.reports.length} reports)`)];
    for (const n of v.notes) out.push(el("p", { class: "note" }, n));
    out.push(table(["time", "status", "drifted", "requests", "release", "report", "retraining"], v.reports.map((r) => [r.time, badge(r.status), r.drifted.join(", "),
      num(r.requests), r.version || "—", el("td", {}, r.html.map((h) => link("reports/" + encodeURIComponent(h), "Evidently"))), r.retraining ? (r.retraining.fires ? "fires" : "quiet") : "—"]),
      (i) => ({ class: "report", "data-status": v.reports[i].status })));
    out.push(el("h2", {}, "Signals over time"), el("p", {}, "Each report's score against its threshold (dashed); red: drifted, grey: not judged; orange lines: retraining triggers."));
    out.push(el("div", { class: "signals" }, Object.entries(v.signals).map(([name, points]) => el("div", { class: "signal" }, el("h3", {}, name), timeline(name, points, v.triggers)))));
    out.push(el("h2", {}, "Retraining triggers"), v.triggers.length ? table(["time", "why", "exit", "verdict"], v.triggers.map((t) => [t.time, t.why, num(t.exit_code), t.verdict || "—"])) : el("p", {}, "none"));
    page.replaceChildren(...out);
  }

  // -- routing and credentials ------------------------------------------------------------
  async function route() {
    const parts = (location.hash.replace(/^#\/?/, "") || "releases").split("/").map(decodeURIComponent);
    document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === "#/" + parts[0]));
    try {
      if (parts[0] === "release") await releasePage(parts[1]);
      else if (parts[0] === "compare") await comparePage(parts[1], parts[2]);
      else if (parts[0] === "canary") await canaryPage();
      else if (parts[0] === "drift") await driftPage();
      else await releasesPage();
    } catch (err) {
      if (err.status === 401) document.getElementById("key-form").hidden = false;
      page.replaceChildren(el("p", { class: "message error", id: "error" }, `${err.status || ""} ${err.message}`));
    }
  }

  function takeSecret(form, input, use) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      use(input.value.trim() || null);
      input.value = ""; // the page keeps no copy of what was typed
      route();
    });
  }

  document.getElementById("mode").textContent = LIVE ? "live service" : "static snapshot";
  if (LIVE) {
    document.getElementById("credentials").hidden = false;
    takeSecret(document.getElementById("token-form"), document.getElementById("token-input"), (t) => {
      adminToken = t;
      document.getElementById("token-state").textContent = t ? "admin token held in this tab" : "no admin token in this tab";
    });
    takeSecret(document.getElementById("key-form"), document.getElementById("key-input"), (k) => { apiKey = k; });
  }
  window.addEventListener("hashchange", route);
  route();
})();
