"use strict";
const SPARK = [["respiratory_rate_per_min","RR /min"],["spo2_pct","SpO2 %"],["heart_rate_bpm","Pulse /min"],["systolic_bp_mmhg","SBP mmHg"],["news2","NEWS2"]];
const histories = {};
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));

function sparkline(rows, key) {
  const pts = rows.map(r => [r.t, r[key]]).filter(p => typeof p[1] === "number");
  if (pts.length < 2) return "";
  const w = 96, h = 28, xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x => 2 + (w - 4) * (x - x0) / Math.max(1, x1 - x0);
  const sy = y => h - 3 - (h - 6) * (y - y0) / Math.max(1e-9, y1 - y0);
  const d = pts.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
  const last = pts[pts.length - 1];
  return `<figure><svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><path d="${d}" fill="none" stroke="#38bdf8" stroke-width="1.5"/>` +
    `<circle cx="${sx(last[0]).toFixed(1)}" cy="${sy(last[1]).toFixed(1)}" r="2" fill="#f8fafc"/></svg>${esc(key === "news2" ? "NEWS2" : SPARK.find(s => s[0] === key)[1])} ${esc(last[1])}</figure>`;
}

async function loadHistory(pid) {
  const r = await fetch(`/api/patients/${encodeURIComponent(pid)}/history`, {credentials: "same-origin"});
  if (r.ok) { histories[pid] = (await r.json()).history; render(lastAlerts); }
}

function card(a) {
  const ex = a.explanation || {};
  const resp = ex.response || {};
  const acked = a.transition === "ACKNOWLEDGED";
  const drivers = (ex.drivers || []).slice(0, 4).map(d => `<li>${esc(d.text)}</li>`).join("");
  const hist = histories[a.patient_id] || [];
  const sparks = SPARK.map(([k]) => sparkline(hist, k)).join("");
  const obsTs = ex.observation_ts_ms;
  const age = typeof a.data_age_s === "number" ? ` (${a.data_age_s < 90 ? Math.round(a.data_age_s) + " s" : Math.round(a.data_age_s / 60) + " min"} old when raised)` : "";
  const data = obsTs ? `<div class="meta data-age">Data from ${esc(new Date(obsTs).toLocaleString())}${esc(age)}</div>` : "";
  const pers = ex.personal || {};
  const ctxLine = [pers.age_band ? "age " + pers.age_band : "", (pers.conditions || []).join(", "), pers.ward ? "ward " + pers.ward : ""].filter(Boolean).join(" · ");
  const context = (ctxLine ? `<div class="meta context">${esc(ctxLine)}</div>` : "") + (pers.spo2_scale_note ? `<div class="meta context-note">${esc(pers.spo2_scale_note)}</div>` : "");
  const due = ex.paging && typeof ex.paging.next_obs_due_ts_ms === "number" ? `; next observations due ${new Date(ex.paging.next_obs_due_ts_ms).toLocaleTimeString()}` : "";
  const paging = ex.paging && ex.paging.paged === false ? `<div class="meta paging">Not paged: ${esc(ex.paging.why + due)}</div>` : "";
  const m = ex.model;
  const own = m && m.parts && typeof m.own_risk === "number" ? (m.carries_weight ? `, model's own ${(100 * m.own_risk).toFixed(0)}%` : ", from NEWS2 alone") : "";
  const model = m ? `<div class="meta model">${m.parts ? "Combined risk" : "Model risk"} ${(100 * m.risk).toFixed(0)}%${esc(own)} (${esc(m.version)})</div>` : "";
  return `<article class="card ${esc(a.priority)} ${acked ? "acked" : ""}" data-alert="${esc(a.alert_id)}" data-state="${esc(a.transition)}">
    <div class="top"><span class="prio">${esc(a.priority)}</span><span class="pid">${esc(a.patient_id)}</span>
      <span class="news2"><small>NEWS2 at alert </small>${esc(a.news2_total ?? "–")}</span></div>
    <div class="summary">${esc(ex.summary)}</div>
    <ul class="drivers">${drivers}</ul>
    <div class="spark">${sparks}</div>
    <div class="response"><b>Guideline response:</b> ${esc(resp.text || (ex.news2 || {}).response)}
      <br><b>Observations:</b> ${esc(resp.min_obs_frequency || (ex.news2 || {}).min_obs_frequency)}</div>
    ${model}
    ${context}${data}${paging}
    <div class="meta">${esc(a.transition)}${a.actor ? " by " + esc(a.actor) : ""} · ${new Date(a.ts_ms).toLocaleString()}</div>
    <div class="actions">
      <button class="ack" data-action="ack" data-id="${esc(a.alert_id)}" ${acked ? "disabled" : ""}>Acknowledge</button>
      <button class="resolve" data-action="resolve" data-id="${esc(a.alert_id)}">Resolve</button>
    </div></article>`;
}

let lastAlerts = [];
function render(alerts) {
  lastAlerts = alerts;
  const el = document.getElementById("alerts");
  el.innerHTML = alerts.length ? alerts.map(card).join("") : '<div class="empty">No open alerts.</div>';
  const n = p => alerts.filter(a => a.priority === p).length;
  document.getElementById("counts").innerHTML =
    `<span class="c-high">${n("high")} high</span><span class="c-medium">${n("medium")} medium</span><span class="c-low">${n("low")} low</span>`;
  for (const a of alerts) if (!(a.patient_id in histories)) { histories[a.patient_id] = []; loadHistory(a.patient_id); }
}

let csrf = "";
async function act(alertId, action) {
  const r = await fetch(`/api/alerts/${encodeURIComponent(alertId)}/${action}`, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: "{}"});
  if (r.status === 401) { location.href = "/login"; return; }
  if (!r.ok) alert(`Could not ${action}: ${r.status}`);
}
document.getElementById("alerts").addEventListener("click", e => {
  const b = e.target.closest("button[data-action]");
  if (b && !b.disabled) act(b.dataset.id, b.dataset.action);
});

async function signOut() {
  await fetch("/logout", {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf}});
  location.href = "/login";
}
document.getElementById("signout").addEventListener("click", signOut);

// a session that ended (idle, sign-out elsewhere, disabled) sends the page to sign-in
async function whoami() {
  const r = await fetch("/api/me", {credentials: "same-origin"});
  if (r.status === 401) { location.href = "/login"; return null; }
  const me = await r.json();
  csrf = me.csrf_token || "";
  document.getElementById("who").textContent = `${me.name} (${me.role})`;
  return me;
}

function connect() {
  const src = new EventSource("/api/stream");
  src.addEventListener("alerts", e => {
    const alerts = JSON.parse(e.data).alerts;
    for (const a of alerts) delete histories[a.patient_id];  // refresh trends on change
    render(alerts);
  });
  src.onopen = () => { document.getElementById("dot").className = "dot"; document.getElementById("conn").textContent = "live"; };
  src.onerror = () => {
    document.getElementById("dot").className = "dot off"; document.getElementById("conn").textContent = "reconnecting…";
    whoami();
  };
}
whoami().then(me => { if (me) connect(); });
