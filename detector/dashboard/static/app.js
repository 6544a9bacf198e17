// smsguard dashboard: no framework, no build step. Every string from the server goes in as textContent.
"use strict";

const S = { token: sessionStorage.getItem("smsguard-token") || "", operator: null, labelled: {}, streamCount: 0 };
const $ = (id) => document.getElementById(id);
const STATE_ORDER = ["block", "throttle", "watch", "normal", "allowlist"];
const STREAM_MAX = 200;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
const svgEl = (tag, attrs) => { const n = document.createElementNS("http://www.w3.org/2000/svg", tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); return n; };

// Beijing time for every timestamp: operators think in CST whatever the browser's zone.
function fmtTime(ms, withDate) {
  if (!ms) return "—";
  const d = new Date(ms + 8 * 3600e3);
  const p = (n) => String(n).padStart(2, "0");
  const t = `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
  return withDate ? `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${t}` : t;
}
const fmtNum = (n, digits = 0) => (n === null || n === undefined) ? "—" : Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const pct = (x) => (x === null || x === undefined) ? "—" : `${Math.round(x * 100)}%`;
const stateBadge = (state) => el("span", { class: `state state-${state || "normal"}`, text: state || "normal" });

async function api(path, opts = {}) {
  const headers = { "Accept": "application/json" };
  if (opts.body) headers["Content-Type"] = "application/json";
  if (S.token) headers["Authorization"] = `Bearer ${S.token}`;
  const resp = await fetch(path, { method: opts.method || "GET", headers, body: opts.body ? JSON.stringify(opts.body) : undefined });
  let data = {};
  try { data = await resp.json(); } catch (e) { /* non-JSON error page */ }
  if (!resp.ok) { const err = new Error(data.error || `${resp.status} ${resp.statusText}`); err.status = resp.status; throw err; }
  return data;
}

function toast(text, bad) {
  const t = $("toast"); t.textContent = text; t.className = bad ? "toast bad" : "toast"; t.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

// ---- sparklines -------------------------------------------------------------------------------
function sparkPath(values, w, h) {
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  return values.map((v, i) => `${i ? "L" : "M"}${(i * step).toFixed(1)},${(h - 1 - (v / max) * (h - 3)).toFixed(1)}`).join("");
}
function sparkline(values, w = 110, h = 20) {
  const svg = svgEl("svg", { class: "spark", viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none" });
  const line = sparkPath(values, w, h);
  svg.append(svgEl("path", { class: "area", d: `${line}L${w},${h}L0,${h}Z` }), svgEl("path", { class: "line", d: line }));
  return svg;
}

// ---- status, banner, operator ----------------------------------------------------------------------
function showStatus(st) {
  if (!st) return;
  const k = $("pill-kafka"), r = $("pill-redis");
  k.textContent = st.kafka.ok ? `Kafka ✓ lag ${fmtNum(st.kafka.lag)}` : "Kafka ✗"; k.className = `pill ${st.kafka.ok ? "ok" : "bad"}`;
  r.textContent = st.redis.ok ? "Redis ✓" : "Redis ✗"; r.className = `pill ${st.redis.ok ? "ok" : "bad"}`;
  if (st.event_time_ms) $("pill-clock").textContent = `event time ${fmtTime(st.event_time_ms, true)} CST`;
  const problems = [];
  if (!st.kafka.ok) problems.push(`Kafka unreachable — live stream paused, reconnecting (${st.kafka.error || "no connection yet"})`);
  if (!st.redis.ok) problems.push(`Redis unreachable — port states may be stale, retrying (${st.redis.error || ""})`);
  setBanner(problems.join(" · "), true);
}
function setBanner(text, bad) { const b = $("banner"); b.hidden = !text; b.textContent = text || ""; b.className = bad ? "banner bad" : "banner"; }

async function checkOperator() {
  if (!S.token) { S.operator = null; renderOperator(); return; }
  try { const me = await api("/api/me"); S.operator = me.operator; if (!me.operator) { toast("Token not accepted", true); S.token = ""; sessionStorage.removeItem("smsguard-token"); } }
  catch (e) { S.operator = null; }
  renderOperator();
}
function renderOperator() {
  const signedIn = !!S.operator;
  document.body.classList.toggle("signed-in", signedIn);
  $("signin").hidden = signedIn; $("whoami").hidden = !signedIn; $("signout").hidden = !signedIn;
  $("whoami").textContent = signedIn ? S.operator : "";
}

// ---- live stream -------------------------------------------------------------------------------
function reasonTags(reasons) {
  return (reasons || []).slice().sort((a, b) => b.value * b.weight - a.value * a.weight).slice(0, 5)
    .map((r) => el("span", { class: "tag", title: r.detail || `${r.signal} = ${r.value} × ${r.weight}`, text: r.signal }));
}
function messageItem(d, fresh) {
  const labelled = S.labelled[d.msg_id];
  const btns = labelled ? el("span", { class: "labelled", text: `labelled ${labelled}` }) : el("span", { class: "label-btns" },
    el("button", { title: "Label as spam 标为垃圾", onclick: () => labelMessage(d.msg_id, "spam"), text: "spam" }),
    el("button", { title: "Label as normal 标为正常", onclick: () => labelMessage(d.msg_id, "normal"), text: "normal" }));
  return el("li", { class: `msg${fresh ? " new" : ""}`, "data-msg-id": d.msg_id, "data-port": d.port },
    el("div", { class: "msg-top" },
      el("span", { class: `act-${d.action}`, text: d.action.toUpperCase() }),
      el("a", { class: "port", href: `/port/${encodeURIComponent(d.port)}`, text: d.port }),
      d.signature ? el("span", { text: `【${d.signature}】` }) : null,
      el("span", { title: "recipient (hashed id prefix)", text: d.recipient || "" }),
      el("span", { text: fmtTime(d.ts_ms) }),
      el("span", { class: "score", title: "classifier score · total risk", text: `p=${fmtNum(d.score, 2)} · risk ${fmtNum(d.risk, 1)}` })),
    el("div", { class: "msg-text", title: d.content, text: d.content }),
    el("div", { class: "msg-reasons" }, reasonTags(d.reasons), btns));
}
function addToStream(d) {
  const list = $("stream");
  list.prepend(messageItem(d, true));
  while (list.children.length > STREAM_MAX) list.lastChild.remove();
  S.streamCount += 1;
  $("stream-count").textContent = `${fmtNum(S.streamCount)} since page load`;
  if (S.port && d.port === S.port) { $("pp-recent").prepend(messageItem(d, true)); }
}
async function labelMessage(msgId, label) {
  try {
    await api(`/api/messages/${encodeURIComponent(msgId)}/label`, { method: "POST", body: { label } });
    S.labelled[msgId] = label;
    document.querySelectorAll(`li.msg[data-msg-id="${CSS.escape(msgId)}"] .label-btns`).forEach((b) => b.replaceWith(el("span", { class: "labelled", text: `labelled ${label}` })));
    toast(`Labelled ${label} → sms.feedback`);
  } catch (e) { toast(`Label failed: ${e.message}`, e.status !== 401); }
}

// ---- audit log --------------------------------------------------------------------------------
function auditItem(e) {
  const what = e.action === "label" ? `labelled ${e.msg_id} ${e.label}` : `${e.action} ${e.port}`;
  const extra = [];
  if (e.rate_limit_per_min !== null && e.rate_limit_per_min !== undefined) extra.push(`${e.rate_limit_per_min}/min`);
  if (e.expires_at_ms) extra.push(`until ${fmtTime(e.expires_at_ms, true)}`);
  if (e.outcome && e.outcome !== "done") extra.push(`✗ ${e.outcome}`);
  return el("li", { "data-action": e.action, "data-port": e.port || "" },
    el("span", { class: "muted", text: `${fmtTime(e.at_ms, true)} ` }), el("span", { class: "who", text: e.operator }), ` ${what} `,
    el("span", { class: "muted", text: extra.join(" · ") }),
    e.reason ? el("span", { class: "why", text: `“${e.reason}”` }) : null);
}
async function loadAudit() {
  try {
    const data = await api("/api/audit?limit=50");
    $("audit").replaceChildren(...(data.entries.length ? data.entries.map(auditItem) : [el("li", { class: "none", text: "No operator actions yet. 暂无操作" })]));
  }
  catch (e) { /* shown by the banner */ }
}

// ---- overview: KPIs and ports table ---------------------------------------------------------------
function filterQuery() {
  const q = new URLSearchParams();
  for (const [id, name] of [["f-state", "state"], ["f-sp", "sp_id"], ["f-sig", "signature"], ["f-q", "q"]]) { const v = $(id).value.trim(); if (v) q.set(name, v); }
  return q.toString();
}
function portRow(r) {
  const ratio = r.baseline ? r.rate_now / Math.max(r.baseline, 0.1) : null;
  const rate = el("td", { class: "num" }, el("span", { class: ratio && ratio >= 3 ? "up" : "", text: fmtNum(r.rate_now, 1) }),
    el("span", { class: "dim", text: ` / ${r.baseline === null ? "—" : fmtNum(r.baseline, 1)}` }));
  const stateTitle = [r.decided_by ? `by ${r.decided_by}` : "", r.note || "", r.rate_limit_per_min !== null && r.rate_limit_per_min !== undefined ? `${r.rate_limit_per_min}/min` : ""].filter(Boolean).join(" · ");
  return el("tr", { class: `st-${r.state}`, "data-port": r.port, "data-state": r.state, onclick: () => go(`/port/${encodeURIComponent(r.port)}`) },
    el("td", { class: "port", text: r.port }),
    el("td", { class: "state-cell", title: stateTitle }, stateBadge(r.state), r.expired ? el("span", { class: "expired", title: "expired: the engine steps it down on the port's next message", text: " expired" }) : null),
    el("td", { class: "num", text: fmtNum(r.risk, 2) }),
    rate,
    el("td", {}, sparkline(r.spark)),
    el("td", { class: "num", text: r.volume ? pct(r.spam_share) : "—" }),
    el("td", { class: "num", text: fmtNum(r.fan_out) }),
    el("td", { class: `num${r.complaints ? " up" : ""}`, text: fmtNum(r.complaints) }),
    el("td", { class: "reasons" }, (r.top_reasons || []).map(([s, n]) => el("span", { class: "tag", title: `${n} flagged`, text: s }))),
    el("td", { class: "sigcell", title: (r.sp_ids || []).join(", ") }, (r.signatures || []).slice(0, 2).map(([s]) => el("span", { class: "tag", text: s }))));
}
function renderKpis(data) {
  const t = data.totals, byAction = t.by_action || {}, vol = t.volume_per_min || [];
  const last = vol.slice(-6, -1); const avg = last.length ? last.reduce((a, b) => a + b, 0) / last.length : 0;
  $("kpi-rate").textContent = fmtNum(avg, 0);
  $("kpi-spark").replaceChildren(svgEl("path", { d: sparkPath(vol.slice(-30), 120, 28) }));
  $("kpi-flagged").textContent = fmtNum((byAction.flag || 0) + (byAction.block || 0));
  $("kpi-blocked").textContent = fmtNum(byAction.block || 0);
  const counts = {}; for (const r of data.ports) counts[r.state] = (counts[r.state] || 0) + 1;
  $("kpi-throttle").textContent = fmtNum(counts.throttle || 0);
  $("kpi-block").textContent = fmtNum(counts.block || 0);
  $("kpi-ports").textContent = fmtNum(t.ports_active);
}
async function loadPorts() {
  try {
    const data = await api(`/api/ports?${filterQuery()}`);
    const sel = $("f-state");
    if (sel.options.length === 1) for (const s of STATE_ORDER) sel.append(el("option", { value: s, text: s }));
    $("ports").tBodies[0].replaceChildren(...data.ports.map(portRow));
    $("ports-empty").hidden = data.ports.length > 0;
    renderKpis(data);
    showStatus(data.status);
  } catch (e) { setBanner(`Dashboard API unreachable: ${e.message} — retrying`, true); }
}

// ---- port page -----------------------------------------------------------------------------------
function chart(volume, flagged) {
  const svg = $("pp-chart"); const W = 600, H = 140, n = volume.length || 1, bw = W / n, max = Math.max(1, ...volume);
  svg.replaceChildren();
  for (let i = 0; i <= 2; i++) { const y = 10 + (H - 30) * i / 2; svg.append(svgEl("line", { x1: 0, x2: W, y1: y, y2: y })); }
  const t = svgEl("text", { x: 2, y: 9 }); t.textContent = `${fmtNum(max)}/min`; svg.append(t);
  volume.forEach((v, i) => {
    const h = (H - 30) * v / max;
    svg.append(svgEl("rect", { class: "vol", x: i * bw + 1, y: H - 20 - h, width: Math.max(1, bw - 2), height: h }));
    const f = (H - 30) * (flagged[i] || 0) / max;
    if (f > 0) svg.append(svgEl("rect", { class: "flag", x: i * bw + 1, y: H - 20 - f, width: Math.max(1, bw - 2), height: f }));
  });
  const l = svgEl("text", { x: 2, y: H - 6 }); l.textContent = "−60 min"; svg.append(l);
  const mid = svgEl("text", { x: W / 2 - 14, y: H - 6 }); mid.textContent = "−30 min"; svg.append(mid);
  const r = svgEl("text", { x: W - 30, y: H - 6 }); r.textContent = "now"; svg.append(r);
}
function historyItem(a) {
  return el("li", {}, el("span", { class: "muted", text: `${fmtTime(a.ts_ms, true)} ` }),
    stateBadge(a.previous_state || "normal"), " → ", stateBadge(a.state), " ", el("span", { class: "who", text: a.decided_by }),
    a.rate_limit_per_min !== null && a.rate_limit_per_min !== undefined ? el("span", { class: "muted", text: ` ${a.rate_limit_per_min}/min` }) : null,
    a.expires_at_ms ? el("span", { class: "muted", text: ` until ${fmtTime(a.expires_at_ms, true)}` }) : null,
    el("span", { class: "why", text: a.note || (a.reasons || []).map((x) => x.detail ? `${x.signal}: ${x.detail}` : x.signal).join(", ") }));
}
function historyWithPort(a) {
  const li = historyItem(a);
  li.insertBefore(el("a", { class: "port mono", href: `/port/${encodeURIComponent(a.port)}`, text: `${a.port} ` }), li.children[1]);
  return li;
}
async function loadChanges() {
  try {
    const data = await api("/api/port-actions?limit=50");
    $("changes").replaceChildren(...(data.actions.length ? data.actions.map(historyWithPort) : [el("li", { class: "none", text: "No state changes yet. 暂无变更" })]));
  } catch (e) { /* banner */ }
}
async function loadPort() {
  if (!S.port) return;
  try {
    const d = await api(`/api/ports/${encodeURIComponent(S.port)}`);
    const r = d.port;
    $("pp-port").textContent = r.port;
    $("pp-state").replaceWith(Object.assign(stateBadge(r.state), { id: "pp-state" }));
    $("pp-meta").textContent = [r.sp_ids.length ? `provider ${r.sp_ids.join(", ")}` : "", r.decided_by ? `state by ${r.decided_by} since ${fmtTime(r.since_ms, true)}` : "",
      r.note ? `“${r.note}”` : "", r.expires_at_ms ? `expires ${fmtTime(r.expires_at_ms, true)}` : ""].filter(Boolean).join(" · ");
    const kpi = (label, value, cls) => el("div", { class: "kpi" }, el("div", { class: "kpi-label", text: label }), el("div", { class: `kpi-value ${cls || ""}`, text: value }));
    $("pp-kpis").replaceChildren(kpi("Rate now / min", fmtNum(r.rate_now, 1)), kpi("Baseline / min", r.baseline === null ? "—" : fmtNum(r.baseline, 1)),
      kpi("Spam share 15 min", pct(r.spam_share), r.spam_share > 0.3 ? "bad" : ""), kpi("Flagged 15 min", fmtNum(r.flagged), r.flagged ? "warn" : ""),
      kpi("Fan-out 15 min", fmtNum(r.fan_out)), kpi("Complaints 15 min", fmtNum(r.complaints), r.complaints ? "bad" : ""));
    chart(d.volume, d.flagged_volume);
    $("pp-history").replaceChildren(...(d.history.length ? d.history.map(historyItem) : [el("li", { class: "muted", text: d.history_error ? `history unavailable: ${d.history_error}` : "No state changes recorded." })]));
    $("pp-recent").replaceChildren(...(d.recent.length ? d.recent.map((m) => messageItem(m, false)) : [el("li", { class: "muted msg", text: "Nothing flagged in the recent past." })]));
    $("pp-templates").replaceChildren(...r.templates.map(([t, n]) => el("li", {}, el("span", { text: t }), el("span", { class: "count", text: fmtNum(n) }))));
    const registered = new Set(d.registered_signatures);
    const seen = r.signatures.map(([s, n]) => el("span", { class: `tag${registered.size && !registered.has(s) ? " unregistered" : ""}`, title: registered.has(s) ? "registered 已报备" : (registered.size ? "NOT registered for this port 未报备" : ""), text: `【${s}】 ${n}` }));
    $("pp-sigs").replaceChildren(...seen, ...(registered.size ? [el("span", { class: "muted small", text: ` registered: ${[...registered].join("、")}` })] : []));
  } catch (e) { setBanner(`Port ${S.port}: ${e.message}`, true); }
}

// ---- actions ------------------------------------------------------------------------------------
const KIND_TITLE = { throttle: "Throttle 限流", block: "Block 封停", release: "Release 解除", allowlist: "Allowlist 白名单" };
function openAction(kind) {
  S.pendingKind = kind;
  $("ad-title").textContent = `${KIND_TITLE[kind]} · port ${S.port}`;
  $("ad-reason").value = ""; $("ad-rate").value = ""; $("ad-expiry").value = kind === "throttle" ? "3600" : "";
  $("ad-rate-wrap").hidden = kind !== "throttle"; $("ad-error").hidden = true;
  $("action-dialog").showModal(); $("ad-reason").focus();
}
async function submitAction(ev) {
  ev.preventDefault();
  const reason = $("ad-reason").value.trim();
  if (!reason) { $("ad-error").textContent = "A reason is required."; $("ad-error").hidden = false; return; }
  const body = { kind: S.pendingKind, reason };
  if ($("ad-expiry").value) body.expires_in_s = Number($("ad-expiry").value);
  if (S.pendingKind === "throttle" && $("ad-rate").value !== "") body.rate_limit_per_min = Number($("ad-rate").value);
  try {
    await api(`/api/ports/${encodeURIComponent(S.port)}/actions`, { method: "POST", body });
    $("action-dialog").close(); toast(`${S.pendingKind} ${S.port}: done`); loadPort(); loadAudit();
  } catch (e) { $("ad-error").textContent = e.message; $("ad-error").hidden = false; }
}

// ---- routing & wiring ------------------------------------------------------------------------------
function route() {
  const m = location.pathname.match(/^\/port\/([^/]+)$/);
  S.port = m ? decodeURIComponent(m[1]) : null;
  $("overview").hidden = !!S.port; $("portpage").hidden = !S.port;
  document.title = S.port ? `${S.port} · smsguard` : "smsguard · 端口监控";
  if (S.port) loadPort(); else loadPorts();
}
function go(path) { history.pushState(null, "", path); route(); window.scrollTo(0, 0); }

function connectStream() {
  const es = new EventSource("/api/stream");
  es.addEventListener("decision", (e) => addToStream(JSON.parse(e.data)));
  es.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));
  es.addEventListener("audit", (e) => { $("audit").querySelector("li.none")?.remove(); $("audit").prepend(auditItem(JSON.parse(e.data))); });
  es.addEventListener("port", (e) => {
    const a = JSON.parse(e.data);
    $("changes").querySelector("li.none")?.remove();
    $("changes").prepend(historyWithPort(a));
    while ($("changes").children.length > 50) $("changes").lastChild.remove();
    if (S.port === a.port) loadPort(); else if (!S.port) schedulePorts();
  });
  es.onerror = () => { $("pill-kafka").textContent = "stream reconnecting…"; $("pill-kafka").className = "pill bad"; };
}
let portsTimer = null;
function schedulePorts() { if (!portsTimer) portsTimer = setTimeout(() => { portsTimer = null; loadPorts(); }, 300); }

async function loadInitialStream() {
  try { const data = await api("/api/flagged?limit=60"); $("stream").replaceChildren(...data.flagged.map((d) => messageItem(d, false))); }
  catch (e) { /* banner */ }
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("submit", (e) => { e.preventDefault(); S.token = $("token").value.trim(); $("token").value = ""; sessionStorage.setItem("smsguard-token", S.token); checkOperator(); });
  $("signout").addEventListener("click", () => { S.token = ""; S.operator = null; sessionStorage.removeItem("smsguard-token"); renderOperator(); });
  $("filters").addEventListener("input", () => loadPorts());
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  document.querySelectorAll("#pp-actions button").forEach((b) => b.addEventListener("click", () => openAction(b.dataset.kind)));
  $("action-form").addEventListener("submit", submitAction);
  $("ad-cancel").addEventListener("click", (e) => { e.preventDefault(); $("action-dialog").close(); });
  document.addEventListener("click", (e) => { const a = e.target.closest("a[href^='/']"); if (a && !e.ctrlKey && !e.metaKey) { e.preventDefault(); go(a.getAttribute("href")); } });
  window.addEventListener("popstate", route);
  checkOperator(); route(); loadAudit(); loadChanges(); loadInitialStream(); connectStream();
  setInterval(() => { if (S.port) loadPort(); else loadPorts(); }, 2000);
});
