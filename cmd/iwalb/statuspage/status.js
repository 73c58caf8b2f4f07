// iwalb's status page: fetches /status.json every 2 seconds and shows it.
// Every value is set as text (never as HTML): a backend's error message
// or a reason comes from the network.
"use strict";

const REFRESH_MS = 2000;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}

function ago(iso, now) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((now - new Date(iso)) / 1000));
  return s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

function renderPools(pools, now) {
  const box = document.getElementById("pools");
  box.replaceChildren();
  if (!pools || pools.length === 0) {
    box.appendChild(el("p", "No pools are configured.", "muted"));
    return;
  }
  for (const p of pools) {
    const backends = p.backends || [];
    const h = el("h3", p.name + " — " + p.healthy + " of " + backends.length + " healthy (" + p.policy + ")");
    h.className = "pool";
    h.dataset.pool = p.name;
    const t = el("table");
    const head = row(["node", "fqdn", "address", "state", "active", "last check", "last failure"]);
    for (const td of head.children) { const th = el("th", td.textContent); td.replaceWith(th); }
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    for (const b of backends) {
      const shown = b.drained ? "drained" : b.state;
      const state = el("span", shown, "state state-" + shown);
      const tr = row([b.name, b.fqdn || "", b.addr, state, b.active, ago(b.last_check, now),
        el("span", b.last_error || "", "lasterror")], "backend");
      tr.dataset.backend = b.name;
      tr.dataset.state = shown;
      body.appendChild(tr);
    }
    box.append(h, t);
  }
}

function renderRows(id, rows, empty) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = row([empty]);
    tr.firstChild.colSpan = 3;
    tr.className = "muted";
    body.appendChild(tr);
    return;
  }
  for (const r of rows) body.appendChild(r);
}

function render(v) {
  const now = new Date(v.time);
  document.getElementById("summary").textContent =
    "Configuration generation " + v.generation + (v.config_hash ? " (" + v.config_hash + ")" : "") +
    " — updated " + now.toLocaleTimeString();
  renderPools(v.pools, now);
  renderRows("connections", (v.connections || []).map(c => row([c.role, c.listener, c.open], "conns")),
    "No front door or auth node in this process.");
  const w = v.login_failures_window;
  document.getElementById("window").textContent =
    "Recent: the last " + Math.max(1, Math.round(w.seconds / 60)) + " min (since " + new Date(w.since).toLocaleTimeString() + ").";
  renderRows("failures", (v.login_failures || []).map(f => {
    const tr = row([f.reason, f.recent, f.total], "failure");
    tr.dataset.reason = f.reason;
    return tr;
  }), "No failed login since the process started.");
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const r = await fetch("/status.json", { cache: "no-store" });
    if (!r.ok) throw new Error("status.json answered " + r.status);
    render(await r.json());
    err.hidden = true;
    document.body.dataset.loaded = "1";
  } catch (e) {
    err.textContent = "Cannot reach iwalb: " + e.message + " (retrying)";
    err.hidden = false;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
