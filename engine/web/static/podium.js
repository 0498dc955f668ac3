// Podium UI: live run page (polls the JSON API while the run is unfinished), task logs fetched
// incrementally, and operator buttons that POST with the API token. No build step, no dependencies.
"use strict";

(() => {
  const FINISHED_TASK = new Set(["success", "failed", "upstream_failed", "skipped", "cancelled"]);
  const POLL_MS = 1000;
  // worst first, as engine/web/fanout.py: a mix of states is coloured by its worst
  const SEVERITY = ["failed", "upstream_failed", "cancelled", "up_for_retry", "paused", "running", "queued", "pending", "skipped", "success"];
  const SYMBOLS = { success: "✓", running: "⟳", failed: "✗", queued: "…", pending: "○", up_for_retry: "↻", upstream_failed: "⊘", skipped: "⤼", cancelled: "⊗", paused: "⏸" };
  const SVG_NS = "http://www.w3.org/2000/svg";
  const rank = (s) => (SEVERITY.includes(s) ? SEVERITY.indexOf(s) : SEVERITY.length);

  const $ = (sel, root = document) => root.querySelector(sel);
  const byTask = (sel, tid) => document.querySelector(`${sel}[data-task="${CSS.escape(tid)}"]`);

  function setState(el, state) {
    if (!el) return;
    for (const c of Array.from(el.classList)) if (c.startsWith("st-")) el.classList.remove(c);
    el.classList.add("st-" + state);
    el.setAttribute("data-state", state);
  }

  function setText(root, field, text) {
    const el = root && root.querySelector(`[data-field="${field}"]`);
    if (el && el.textContent !== text) el.textContent = text;
    return el;
  }

  function duration(s) {
    if (s === null || s === undefined) return "";
    s = Math.max(s, 0);
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${s.toFixed(1)} s`;
    const w = Math.round(s);
    const pad = (n) => String(n).padStart(2, "0");
    if (w < 3600) return `${Math.floor(w / 60)} m ${pad(w % 60)} s`;
    if (w < 86400) return `${Math.floor(w / 3600)} h ${pad(Math.floor((w % 3600) / 60))} m`;
    return `${Math.floor(w / 86400)} d ${pad(Math.floor((w % 86400) / 3600))} h`;
  }

  function utc(epoch) {
    if (epoch === null || epoch === undefined) return "—";
    return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function toast(message, bad) {
    const el = $("#toast");
    if (!el) return;
    el.textContent = message;
    el.className = bad ? "show bad" : "show";
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (el.className = ""), 6000);
  }

  // -- mapped tasks and groups: state mixes --------------------------------------------------------

  function counted(counts) {
    return Object.entries(counts).filter(([, n]) => n > 0).sort((a, b) => rank(b[0]) - rank(a[0]));
  }

  const mixText = (counts) => counted(counts).map(([s, n]) => `${n} ${SYMBOLS[s] || s}`).join(" ");

  function worst(counts) {
    const present = Object.keys(counts).filter((s) => counts[s] > 0);
    return present.length ? present.sort((a, b) => rank(a) - rank(b))[0] : null;
  }

  // the bar along a node's foot: one segment per state, as wide as its share
  function drawMix(node, counts) {
    const bar = node.querySelector("g.mix-bar") || node;
    const box = node.querySelector("rect");
    if (!box) return;
    bar.querySelectorAll("rect.mix").forEach((r) => r.remove());
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    if (!total) return;
    const x0 = +box.getAttribute("x") + 6;
    const inner = +box.getAttribute("width") - 12;
    const y = +box.getAttribute("y") + +box.getAttribute("height") - 6;
    let x = x0;
    for (const [state, n] of Object.entries(counts)) {
      if (!n) continue;
      const r = document.createElementNS(SVG_NS, "rect");
      r.setAttribute("class", "mix st-" + state);
      r.dataset.state = state;
      r.setAttribute("x", x.toFixed(1));
      r.setAttribute("y", y.toFixed(1));
      r.setAttribute("width", ((inner * n) / total).toFixed(2));
      r.setAttribute("height", "4");
      bar.appendChild(r);
      x += (inner * n) / total;
    }
  }

  function applyMapped(tid, t) {
    const m = t.mapped;
    const node = byTask("#graph g.node", tid);
    if (node) {
      setState(node, (m.count && m.worst) || t.state);
      const label = node.querySelector(".node-label");
      if (label) label.textContent = `${tid} ×${m.count || ""}`;
      const note = node.querySelector(".node-state");
      const text = m.count ? mixText(m.states) : t.state;
      if (note && note.textContent !== text) note.textContent = text;
      const title = node.querySelector("title");
      if (title) title.textContent = `${tid}: ${text}`;
      drawMix(node, m.states);
    }
    const panel = document.getElementById("task-" + tid);
    if (!panel) return;
    setText(panel, "mapped-mix", `×${m.count} ${mixText(m.states)}`);
    const block = panel.querySelector(`.instances[data-instances-of="${CSS.escape(tid)}"]`);
    if (!block) return;
    for (const a of block.querySelectorAll("[data-state-count]")) {
      const s = a.dataset.stateCount;
      const n = s === "all" ? m.count : m.states[s] || 0;
      a.textContent = `${n} ${s}`;
    }
    const busy = block.querySelector("details.task[open]");
    if (+block.dataset.count !== m.count && !busy) loadInstances(block, block.dataset.url);
  }

  function applyGroups(run) {
    for (const node of document.querySelectorAll("#graph g.group-node[data-group]")) {
      const gid = node.dataset.group;
      const counts = {};
      for (const t of Object.values(run.tasks)) {
        if (t.instance_of || !t.group || (t.group !== gid && !t.group.startsWith(gid + "."))) continue;
        counts[t.state] = (counts[t.state] || 0) + 1;
      }
      setState(node, worst(counts) || "none");
      const note = node.querySelector(".node-state");
      if (note) note.textContent = mixText(counts);
      drawMix(node, counts);
    }
  }

  // a page of a mapped task's instances: fetched as server-rendered panels, swapped in place
  async function loadInstances(block, url) {
    const r = await fetch(url, { cache: "no-store" });
    if (!r.ok) return toast(`could not load the instances: ${r.status}`, true);
    const holder = document.createElement("div");
    holder.innerHTML = await r.text(); // server-rendered HTML, user text escaped there
    const fresh = holder.firstElementChild;
    if (!fresh) return;
    block.replaceWith(fresh);
    fresh.querySelectorAll("details.task").forEach(bindLog);
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-inst-page]");
    if (!link) return;
    event.preventDefault();
    const block = link.closest(".instances");
    if (block) loadInstances(block, link.href);
  });

  // -- groups collapse and expand on a click (kept for this page view only) -------------------------

  let lastRun = null;

  document.addEventListener("click", async (event) => {
    const toggle = event.target.closest("svg.graph [data-toggle]");
    if (!toggle) return;
    event.preventDefault();
    const svg = toggle.closest("svg.graph");
    const shut = new Set((svg.dataset.collapsed || "").split(",").filter(Boolean));
    const gid = toggle.dataset.toggle;
    if (shut.has(gid)) shut.delete(gid);
    else shut.add(gid);
    const url = new URL(svg.dataset.graphUrl, location.href);
    url.searchParams.set("collapsed", [...shut].join(","));
    const r = await fetch(url, { cache: "no-store" });
    if (!r.ok) return toast(`could not draw the graph: ${r.status}`, true);
    const holder = document.createElement("div");
    holder.innerHTML = await r.text(); // server-rendered SVG, user text escaped there
    const fresh = holder.querySelector("svg.graph");
    if (fresh) svg.replaceWith(fresh);
    if (lastRun) applyRun(lastRun);
  });

  // -- the run page ------------------------------------------------------------------------------

  const main = $("main[data-run-id]");
  const ganttOpen = new Map(); // mapped task -> offset of the instances listed under its row

  function applyRun(run) {
    lastRun = run;
    main.dataset.runState = run.state;
    const badge = $('[data-field="run-state"]');
    if (badge) {
      setState(badge, run.state);
      badge.textContent = run.state;
    }
    setText(document, "run-duration", duration(run.duration));
    if (run.finished_at) setText(document, "run-finished", utc(run.finished_at));
    for (const [tid, t] of Object.entries(run.tasks)) {
      if (t.mapped) applyMapped(tid, t);
      const node = t.mapped ? null : byTask("#graph g.node", tid);
      if (node) {
        setState(node, t.state);
        const label = node.querySelector(".node-state");
        const note = t.try_number > 1 ? `${t.state} · try ${t.try_number}` : t.state;
        if (label && label.textContent !== note) label.textContent = note;
        const title = node.querySelector("title");
        if (title) title.textContent = `${tid}: ${t.state}`;
      }
      const panel = document.getElementById("task-" + tid);
      if (!panel) continue;
      const before = panel.getAttribute("data-state");
      setState(panel, t.state);
      const stateBadge = setText(panel, "state", t.state);
      setState(stateBadge, t.state);
      const max = panel.dataset.maxTries;
      setText(panel, "tries", t.try_number ? `try ${t.try_number}${max ? " of " + max : ""}` : "not started");
      setText(panel, "duration", duration(t.duration));
      setText(panel, "error_line", t.error_line || "");
      setText(panel, "waiting_reason", t.waiting_reason || "");
      setText(panel, "result_preview", t.result_preview || "(none)");
      setText(panel, "checkpoint_preview", t.checkpoint_preview || "(none)");
      const usual = parseFloat(panel.dataset.usual);
      panel.classList.toggle("slow", !!t.duration && usual > 0 && t.duration > 3 * Math.max(usual, 1));
      if (t.state === "failed" && before !== "failed") panel.open = true;
      const pre = panel.querySelector("pre.log");
      if (pre && pre.follow && panel.open) pre.follow();
    }
    applyGroups(run);
    document.title = document.title.replace(/^(\[[a-z_]+\] )?/, `[${run.state}] `);
  }

  async function refreshGantt() {
    const box = $("#gantt");
    if (!box || !main.dataset.gantt) return;
    const url = new URL(main.dataset.gantt, location.href);
    if (ganttOpen.size) url.searchParams.set("expand", [...ganttOpen].map(([t, o]) => `${t}:${o}`).join(","));
    const r = await fetch(url, { cache: "no-store" });
    if (r.ok) box.innerHTML = await r.text(); // server-rendered SVG, user text escaped there
  }

  // a mapped task's row in the timeline lists (or hides) a page of its instances on a click
  document.addEventListener("click", (event) => {
    const row = event.target.closest("#gantt [data-expand]");
    if (!row || !main) return;
    const tid = row.dataset.expand;
    if (ganttOpen.has(tid)) ganttOpen.delete(tid);
    else ganttOpen.set(tid, 0);
    refreshGantt().catch(() => {});
  });

  // the poll leaves out mapped tasks' instances, but for those whose panels are on the page
  function pollUrl() {
    const url = new URL(main.dataset.api, location.href);
    url.searchParams.set("results", "preview");
    url.searchParams.set("instances", "none");
    const shown = [...document.querySelectorAll(".instances details.task[data-task]")].map((d) => d.dataset.task);
    if (shown.length) url.searchParams.set("include", shown.join(","));
    return url;
  }

  async function poll() {
    let run = null;
    try {
      const r = await fetch(pollUrl(), { cache: "no-store" });
      if (r.ok) run = await r.json();
    } catch (e) {
      run = null;
    }
    if (run === null) {
      setTimeout(poll, POLL_MS * 3);
      return;
    }
    applyRun(run);
    await refreshGantt().catch(() => {});
    if (run.finished) {
      main.dataset.finished = "true";
    } else {
      setTimeout(poll, POLL_MS);
    }
  }

  if (main && main.dataset.finished !== "true") setTimeout(poll, POLL_MS);

  // -- task logs: loaded when a task panel opens, followed while the task runs ----------------------

  function bindLog(panel) {
    const pre = panel.querySelector("pre.log");
    if (!pre || pre.follow) return;
    let tryNo = null;
    let after = 0;
    let busy = false;
    let timer = null;

    async function fetchLines() {
      const url = new URL(pre.dataset.logUrl, location.href);
      url.searchParams.set("after", String(after));
      if (tryNo !== null) url.searchParams.set("try", String(tryNo));
      const r = await fetch(url, { cache: "no-store" });
      if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
      return r.json();
    }

    async function load() {
      if (busy || !panel.open) return;
      busy = true;
      try {
        let data = await fetchLines();
        const current = parseInt((panel.querySelector('[data-field="tries"]') || {}).textContent?.match(/\d+/)?.[0] || "0", 10);
        if (tryNo !== null && current > tryNo) {
          tryNo = null; // a new try started: show its log from the top
          after = 0;
          data = await fetchLines();
        }
        if (tryNo === null) {
          pre.textContent = "";
          tryNo = data.try_number;
        }
        setText(panel, "log-try", tryNo ? `try ${tryNo}` : "");
        for (const line of data.lines) {
          const row = document.createElement("span");
          row.className = "log-line lv-" + String(line.level).toLowerCase();
          row.textContent = `${(line.ts_iso || "").slice(11, 23)} ${line.level.padEnd(7)} ${line.message}\n`;
          pre.appendChild(row);
        }
        after = data.next_after;
        if (!pre.firstChild) pre.textContent = data.task_finished ? "(no log lines)" : "(no log lines yet)";
        clearTimeout(timer);
        if (!data.task_finished && panel.open) timer = setTimeout(load, POLL_MS);
      } catch (e) {
        pre.textContent = "could not load the log: " + e.message;
      } finally {
        busy = false;
      }
    }

    pre.follow = () => {
      if (!busy && timer === null) load();
    };
    panel.addEventListener("toggle", () => {
      if (panel.open) load();
    });
    if (panel.open) load();
  }

  document.querySelectorAll("details.task").forEach(bindLog);

  function openFromHash() {
    const id = decodeURIComponent(location.hash.slice(1));
    const target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") {
      target.open = true;
      target.scrollIntoView({ block: "start" });
    }
  }
  window.addEventListener("hashchange", openFromHash);
  openFromHash();

  // -- the lineage graph: one hop each way, expanded hop by hop through /api/lineage --------------

  const lineage = $("#lineage");
  const edges = new Set();

  function linNode(id) {
    return lineage.querySelector(`.lin-node[data-id="${CSS.escape(id)}"]`);
  }

  function linColumn(depth) {
    let col = lineage.querySelector(`.lin-col[data-depth="${depth}"]`);
    if (col) return col;
    col = document.createElement("div");
    col.className = "lin-col";
    col.dataset.depth = String(depth);
    const cols = Array.from(lineage.querySelectorAll(".lin-col"));
    const after = cols.find((c) => parseInt(c.dataset.depth, 10) > depth);
    lineage.insertBefore(col, after || null);
    return col;
  }

  function makeNode(n, depth) {
    const el = document.createElement("div");
    el.className = `lin-node kind-${n.kind}`;
    el.dataset.id = n.id;
    el.dataset.depth = String(depth);
    el.dataset.expand = n.expand;
    const kind = document.createElement("span");
    kind.className = "lin-kind";
    kind.textContent = n.kind;
    const link = document.createElement("a");
    link.href = n.url;
    link.textContent = n.label;
    link.title = n.uri || n.label;
    const more = document.createElement("button");
    more.type = "button";
    more.className = "lin-more";
    more.title = "show the next hop";
    more.textContent = "+";
    el.append(kind, link, more);
    return el;
  }

  function drawEdges() {
    const svg = lineage.querySelector("svg.lin-edges");
    const box = lineage.getBoundingClientRect();
    svg.setAttribute("width", String(lineage.scrollWidth));
    svg.setAttribute("height", String(lineage.scrollHeight));
    svg.replaceChildren();
    for (const edge of edges) {
      const [from, to] = edge.split("\n");
      const a = linNode(from);
      const b = linNode(to);
      if (!a || !b) continue;
      const ra = a.getBoundingClientRect();
      const rb = b.getBoundingClientRect();
      const x1 = ra.right - box.left + lineage.scrollLeft;
      const y1 = ra.top + ra.height / 2 - box.top + lineage.scrollTop;
      const x2 = rb.left - box.left + lineage.scrollLeft;
      const y2 = rb.top + rb.height / 2 - box.top + lineage.scrollTop;
      const mid = (x1 + x2) / 2;
      const path = document.createElementNS(SVG_NS, "path");
      path.setAttribute("d", `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`);
      path.setAttribute("class", "lin-edge");
      svg.appendChild(path);
    }
  }

  async function expandNode(node, button) {
    const depth = parseInt(node.dataset.depth, 10);
    const side = depth < 0 ? "upstream" : "downstream";
    button.disabled = true;
    let data;
    try {
      const r = await fetch(node.dataset.expand, { cache: "no-store" });
      data = await r.json();
      if (!r.ok) throw new Error(data.error || r.statusText);
    } catch (e) {
      button.disabled = false;
      toast("Could not load the lineage: " + e.message, true);
      return;
    }
    const next = depth + (depth < 0 ? -1 : 1);
    const col = linColumn(next);
    for (const n of data[side]) {
      if (!linNode(n.id)) col.appendChild(makeNode(n, next));
      edges.add(depth < 0 ? `${n.id}\n${node.dataset.id}` : `${node.dataset.id}\n${n.id}`);
    }
    if (data[`more_${side}`]) {
      const note = document.createElement("span");
      note.className = "muted small";
      note.textContent = `+${data[`more_${side}`]} more`;
      col.appendChild(note);
    }
    button.remove();
    node.classList.add(data[side].length ? "expanded" : "lin-end");
    drawEdges();
  }

  if (lineage) {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "lin-edges");
    lineage.prepend(svg);
    lineage.querySelectorAll(".lin-node[data-parent]").forEach((n) => {
      const upstream = parseInt(n.dataset.depth, 10) < 0;
      edges.add(upstream ? `${n.dataset.id}\n${n.dataset.parent}` : `${n.dataset.parent}\n${n.dataset.id}`);
    });
    lineage.addEventListener("click", (event) => {
      const button = event.target.closest("button.lin-more");
      if (button) expandNode(button.closest(".lin-node"), button);
    });
    window.addEventListener("resize", drawEdges);
    drawEdges();
  }

  // -- operator actions ------------------------------------------------------------------------------

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-post]");
    if (!button) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    let body = button.dataset.body || "{}";
    if (button.dataset.params !== undefined) {
      const text = window.prompt("Run params (a JSON object)", button.dataset.params);
      if (text === null) return;
      try {
        body = JSON.stringify({ params: JSON.parse(text) });
      } catch (e) {
        toast("Params are not valid JSON: " + e.message, true);
        return;
      }
    }
    const token =
      sessionStorage.getItem("podium-token") ||
      window.prompt("API token (printed by `podium serve`; kept for this tab)");
    if (!token) return;
    button.disabled = true;
    try {
      const r = await fetch(button.dataset.post, {
        method: "POST",
        headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
        body,
      });
      const data = await r.json().catch(() => ({}));
      if (r.status === 401) {
        sessionStorage.removeItem("podium-token");
        toast("The token was refused.", true);
        return;
      }
      if (!r.ok) {
        toast(data.error || `${r.status} ${r.statusText}`, true);
        return;
      }
      sessionStorage.setItem("podium-token", token);
      if (button.dataset.post.endsWith("/trigger") && data.url) location.href = data.url;
      else location.reload();
    } finally {
      button.disabled = false;
    }
  });
})();
