// Mentorflow pages: sign-in, then the JSON API read with the tab's token.
// Everything shown is written with textContent / setAttribute (never
// innerHTML), so no text from the API can become markup. No inline script
// or style: the page's Content-Security-Policy forbids both.
"use strict";

(() => {
  const TOKEN_KEY = "mentorflow.api-token";
  const SVG_NS = "http://www.w3.org/2000/svg";

  class SignedOut extends Error {}
  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  const $ = (id) => document.getElementById(id);
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function say(id, text) {
    const node = $(id);
    if (node) node.textContent = text;
  }

  // --- the API, with the token as a Bearer header (never in a URL or cookie) ---

  async function api(path) {
    const response = await fetch(path, {
      headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    if (response.status === 401) {
      signOut("The token was refused (unknown or revoked). Sign in again.");
      throw new SignedOut();
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).detail || detail;
      } catch (ignored) {
        // not a problem document
      }
      throw new ApiError(response.status, detail);
    }
    return response;
  }

  const json = async (path) => (await api(path)).json();

  async function allPages(path, maxPages) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < (maxPages || 20); page += 1) {
      const sep = path.includes("?") ? "&" : "?";
      const body = await json(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
      items.push(...body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return items;
  }

  function failed(statusId, error) {
    if (error instanceof SignedOut) return;
    say(statusId, error instanceof ApiError ? `Could not load (${error.status}): ${error.message}` : `Could not load: ${error.message}`);
  }

  // --- sign-in and sign-out ---

  function showSignedIn(signedIn) {
    $("sign-in").hidden = signedIn;
    $("content").hidden = !signedIn;
    $("sign-out").hidden = !signedIn;
  }

  const NOTICE_KEY = "mentorflow.notice";

  function signOut(message) {
    // Forget the token and reload the shell, so nothing read with it stays on the page.
    sessionStorage.removeItem(TOKEN_KEY);
    if (message) sessionStorage.setItem(NOTICE_KEY, message);
    location.reload();
  }

  async function signIn(event) {
    event.preventDefault();
    const field = $("api-token");
    const value = field.value.trim();
    field.value = "";
    if (!value) {
      say("sign-in-error", "Enter an API token.");
      field.focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, value);
    try {
      await api("/v1/relationships?limit=1"); // any role may read it; 401 signs out
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        sessionStorage.removeItem(TOKEN_KEY);
        say("sign-in-error", `Sign-in failed: ${error.message}`);
      }
      return;
    }
    say("sign-in-error", "");
    showSignedIn(true);
    $("page-title").focus();
    start();
  }

  // --- the relationships list ---

  const FILTERS = ["phase", "program_id", "mentee_id", "mentor_id", "at_risk"];

  function riskBadges(item) {
    const list = el("ul", { class: "badges" });
    for (const reason of item.risk_reasons || []) {
      const text = reason.detail || reason.message || reason.code;
      const badge = el("li", { class: "badge", title: reason.code });
      const evidence = Array.isArray(reason.evidence) ? reason.evidence : [];
      if (evidence.length === 0) {
        badge.append(el("a", { href: `/ui/relationships/${item.id}#timeline-heading` }, text));
      } else {
        badge.append(text, " · ");
        evidence.forEach((position, index) => {
          if (index) badge.append(" ");
          badge.append(
            el("a", {
              href: `/ui/relationships/${item.id}#position-${position}`,
              "aria-label": `event ${index + 1} that makes "${text}" true (position ${position})`,
            }, evidence.length === 1 ? "see the event" : `event ${index + 1}`),
          );
        });
      }
      list.append(badge);
    }
    return list;
  }

  let listRequest = 0;

  async function relationshipsPage() {
    const mine = (listRequest += 1); // a slower earlier answer must not overwrite a later one
    const form = $("filters");
    const params = new URLSearchParams(location.search);
    for (const name of FILTERS) {
      const field = form.elements[name];
      if (field.type === "checkbox") field.checked = params.get(name) === "true";
      else field.value = params.get(name) || "";
    }
    const query = new URLSearchParams({ limit: "50" });
    for (const name of [...FILTERS, "cursor", "limit"]) {
      if (params.get(name)) query.set(name, params.get(name)); // the API validates them
    }
    say("list-status", "Loading…");
    let body;
    try {
      body = await json(`/v1/relationships?${query}`);
    } catch (error) {
      if (mine === listRequest) failed("list-status", error);
      return;
    }
    if (mine !== listRequest) return;
    const rows = body.items.map((item) =>
      el("tr", {},
        el("td", {}, el("a", { href: `/ui/relationships/${encodeURIComponent(item.id)}` }, item.mentee_name || item.mentee_id)),
        el("td", {}, item.mentor_id || "—"),
        el("td", {}, item.program_id || "—"),
        el("td", {}, el("span", { class: "phase-tag" }, item.phase + (item.paused ? " (paused)" : ""))),
        el("td", { class: "num" }, item.version),
        el("td", {}, item.at_risk ? riskBadges(item) : "no"),
      ),
    );
    document.querySelector("#relationships tbody").replaceChildren(...rows);
    say("list-status", `${rows.length} relationship${rows.length === 1 ? "" : "s"} shown${body.next_cursor ? "; more on the next page" : ""}.`);
    $("next-page").hidden = !body.next_cursor;
    $("next-page").onclick = () => go({ cursor: body.next_cursor });
    $("first-page").hidden = !params.get("cursor");
    $("first-page").onclick = () => go({ cursor: null });
  }

  function go(changes) {
    const params = new URLSearchParams(location.search);
    for (const [name, value] of Object.entries(changes)) {
      if (value) params.set(name, value);
      else params.delete(name);
    }
    const search = params.toString();
    history.pushState(null, "", location.pathname + (search ? "?" + search : ""));
    relationshipsPage();
  }

  function applyFilters(event) {
    event.preventDefault();
    const form = $("filters");
    const changes = { cursor: null };
    for (const name of FILTERS) {
      const field = form.elements[name];
      changes[name] = field.type === "checkbox" ? (field.checked ? "true" : null) : field.value.trim();
    }
    go(changes);
  }

  // --- one relationship ---

  const rel = { id: null, latest: 1, entries: [], byVersion: new Map(), events: new Map(), states: new Map(), timer: null, pendingHash: false };

  function formatValue(value, open) {
    if (value === null || value === undefined || value === "") return "—";
    if (Array.isArray(value) && value.every((v) => typeof v !== "object" || v === null)) {
      return value.length ? value.join(", ") : "none";
    }
    if (typeof value === "object") {
      const size = Array.isArray(value) ? `${value.length} item${value.length === 1 ? "" : "s"}` : "details";
      return el("details", { open: open ? "" : null }, el("summary", {}, size), el("pre", {}, JSON.stringify(value, null, 2)));
    }
    return String(value);
  }

  function facts(dl, pairs) {
    dl.replaceChildren(...pairs.flatMap(([name, value, open]) => [el("dt", {}, name), el("dd", {}, formatValue(value, open))]));
  }

  const STATE_FIELDS = [
    ["Phase", "phase"], ["Paused", "paused"], ["Version", "version"], ["Mentee", "mentee_id"],
    ["Mentor", "mentor_id"], ["Program", "program_id"], ["Opened", "opened_at"],
    ["In this phase since", "current_phase_entered_at"], ["Meetings held", "meetings_held"],
    ["Open action items", "open_action_items"], ["Goals", "goals"], ["Agreement", "agreement"],
    ["Concerns", "concerns"], ["Outcome", "outcome"], ["Accepted next", "allowed_events"],
  ];

  async function stateAt(version) {
    if (!rel.states.has(version)) {
      rel.states.set(version, json(`/v1/relationships/${rel.id}?version=${version}`));
    }
    return rel.states.get(version);
  }

  function highlight(phase) {
    for (const group of document.querySelectorAll(".lifecycle .phase")) {
      const current = group.dataset.phase === phase;
      group.classList.toggle("current", current);
      if (current) {
        group.setAttribute("aria-current", "step");
        // on a narrow screen the diagram scrolls: bring the phase into view
        const box = group.querySelector("rect");
        const frame = group.closest(".diagram");
        const left = Number(box.getAttribute("x")) - (frame.clientWidth - Number(box.getAttribute("width"))) / 2;
        frame.scrollLeft = Math.max(0, left);
      } else {
        group.removeAttribute("aria-current");
      }
    }
  }

  function showState(state) {
    highlight(state.phase);
    say("phase-text", `Phase at version ${state.version}: ${state.phase}${state.paused ? " (paused)" : ""}.`);
    const pairs = STATE_FIELDS.map(([label, key]) => [label, state[key]]);
    facts($("state"), pairs);
    // the API gives the reasons true now (whatever the version asked for)
    if (state.version === rel.latest && Array.isArray(state.risk_reasons) && state.risk_reasons.length) {
      $("state").append(el("dt", {}, "At risk now"), el("dd", {}, riskBadges(state)));
    }
  }

  function eventAt(version) {
    // the timeline's entry when it is loaded; until then the event itself
    if (rel.byVersion.has(version)) return Promise.resolve(rel.byVersion.get(version));
    if (!rel.events.has(version)) {
      const path = `/v1/relationships/${rel.id}/events?from_version=${version}&limit=1`;
      rel.events.set(version, json(path).then((body) => body.items.find((e) => e.version === version)));
    }
    return rel.events.get(version);
  }

  async function showChanged(version) {
    let entry;
    try {
      entry = await eventAt(version);
    } catch (error) {
      failed("relationship-status", error);
      return;
    }
    if (Number($("version").value) !== version) return; // the slider moved on
    const box = $("changed");
    if (!entry) {
      box.replaceChildren(el("p", {}, `No event at version ${version}.`));
      return;
    }
    const dl = el("dl", { class: "facts" });
    const pairs = [["Event", entry.type]];
    if (entry.summary) pairs.push(["Summary", entry.summary]);
    pairs.push(["Occurred", entry.occurred_at], ["Recorded", entry.recorded_at], ["Position", entry.position]);
    if (entry.from_phase || entry.to_phase) pairs.push(["Phase change", `${entry.from_phase} → ${entry.to_phase}`]);
    if (entry.actor) pairs.push(["Actor", entry.actor.id ? `${entry.actor.id} (${entry.actor.role})` : entry.actor]);
    if (entry.source) pairs.push(["Recorded with token", entry.source]);
    pairs.push(["Data", entry.data, true]);
    if (entry.redacted && entry.redacted.length) pairs.push(["Hidden from your role", entry.redacted.join(", ")]);
    facts(dl, pairs);
    box.replaceChildren(dl);
  }

  function scrollTimelineTo(item) {
    const list = $("timeline");
    list.scrollTop = item.offsetTop - list.clientHeight / 2;
  }

  function markTimeline(version) {
    for (const item of document.querySelectorAll("#timeline li.current")) {
      item.classList.remove("current");
      item.removeAttribute("aria-current");
    }
    const item = $(`version-${version}`);
    if (item) {
      item.classList.add("current");
      item.setAttribute("aria-current", "step");
    }
    return item;
  }

  async function showVersion(version, how) {
    version = Math.max(1, Math.min(rel.latest, version));
    const slider = $("version");
    slider.value = String(version);
    const entry = rel.byVersion.get(version);
    const text = `Version ${version} of ${rel.latest}${entry ? `: ${entry.type}` : ""}`;
    slider.setAttribute("aria-valuetext", text);
    $("version-output").textContent = text;
    const params = new URLSearchParams(location.search);
    params.delete("as_of");
    params.set("version", String(version));
    const url = `${location.pathname}?${params}${location.hash}`;
    if (how === "push") history.pushState(null, "", url);
    else if (how !== "keep") history.replaceState(null, "", url);
    const item = markTimeline(version);
    if (item) scrollTimelineTo(item);
    showChanged(version);
    clearTimeout(rel.timer);
    rel.timer = setTimeout(async () => {
      try {
        const state = await stateAt(version);
        if (Number($("version").value) === version) showState(state);
      } catch (error) {
        failed("relationship-status", error);
      }
    }, how === "slide" ? 120 : 0);
  }

  function appendTimeline(entries) {
    rel.entries.push(...entries);
    for (const entry of entries) rel.byVersion.set(entry.version, entry);
    $("timeline").append(...entries.map((entry) =>
      el("li", { id: `version-${entry.version}`, "data-position": entry.position },
        el("a", { href: `?version=${entry.version}`, "data-version": entry.version }, `v${entry.version} · ${entry.type}`),
        " ",
        el("span", {}, entry.summary || ""),
        el("span", { class: "meta", id: `position-${entry.position}` }, ` · position ${entry.position} · ${entry.occurred_at || ""}`),
      ),
    ));
  }

  async function loadTimeline() {
    // a first short page, then the rest in large pages, each shown as it comes
    let cursor = null;
    for (let page = 0; page < 200; page += 1) {
      const size = page ? 500 : 100;
      const more = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      const body = await json(`/v1/relationships/${rel.id}/timeline?limit=${size}${more}`);
      appendTimeline(body.items);
      const current = Number($("version").value);
      if (body.items.some((e) => e.version === current)) {
        scrollTimelineTo(markTimeline(current));
        if (body.items.find((e) => e.version === current).summary) showChanged(current);
      }
      if (rel.pendingHash) followHash();
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    say("timeline-status", `${rel.entries.length} events in the timeline.`);
  }

  function followHash() {
    const match = /^#position-(\d+)$/.exec(location.hash);
    rel.pendingHash = false;
    if (!match) return false;
    const position = Number(match[1]);
    const entry = rel.entries.find((e) => e.position === position);
    if (!entry) {
      rel.pendingHash = true; // not loaded yet
      return false;
    }
    for (const item of document.querySelectorAll("#timeline li.evidence")) item.classList.remove("evidence");
    showVersion(entry.version, "replace");
    const item = $(`version-${entry.version}`);
    item.classList.add("evidence");
    item.scrollIntoView({ block: "center" });
    return true;
  }

  async function showVerification() {
    try {
      const check = await json(`/v1/relationships/${rel.id}/audit/verify`);
      const pairs = [
        ["Hash chain", check.valid ? "valid" : `broken at version ${check.first_invalid_version}`],
        ["Events checked", check.checked],
      ];
      const checkpoint = check.checkpoint;
      if (checkpoint === null) pairs.push(["Signed checkpoint", "none published yet"]);
      else if (checkpoint) {
        pairs.push(["In the latest signed checkpoint", checkpoint.included ? "yes" : "no"]);
        pairs.push(["Checkpoint signature", checkpoint.signature_valid ? "valid" : "invalid"]);
        pairs.push(["Checkpoint tree size", checkpoint.tree_size]);
        if (checkpoint.timestamp) pairs.push(["Checkpoint time", checkpoint.timestamp]);
        if (checkpoint.events_after) pairs.push(["Events after the checkpoint", checkpoint.events_after]);
      }
      facts($("verification"), pairs);
      $("verification").querySelector("dd").className = check.valid ? "valid" : "invalid";
    } catch (error) {
      failed("relationship-status", error);
    }
  }

  async function downloadEvidence() {
    const button = $("download-evidence");
    button.disabled = true;
    say("evidence-status", "Preparing the evidence bundle…");
    try {
      const response = await api(`/v1/relationships/${rel.id}/evidence`);
      const blob = new Blob([await response.text()], { type: "application/json" });
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: `evidence-${rel.id}.json`, hidden: "" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      say("evidence-status", `Downloaded evidence-${rel.id}.json (${blob.size} bytes).`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) say("evidence-status", "Only auditors and administrators may download evidence bundles.");
      else failed("evidence-status", error);
    } finally {
      button.disabled = false;
    }
  }

  async function relationshipPage() {
    rel.id = document.body.dataset.relationshipId;
    const params = new URLSearchParams(location.search);
    say("relationship-status", "Loading…");
    let latest;
    try {
      const wanted = params.get("as_of") ? `?as_of=${encodeURIComponent(params.get("as_of"))}` : "";
      latest = await json(`/v1/relationships/${rel.id}`);
      rel.states.set(latest.version, Promise.resolve(latest));
      rel.latest = latest.version;
      if (wanted) {
        const then = await json(`/v1/relationships/${rel.id}${wanted}`);
        rel.states.set(then.version, Promise.resolve(then));
        params.set("version", String(then.version));
      }
    } catch (error) {
      failed("relationship-status", error);
      return;
    }
    say("relationship-name", latest.mentee_name || latest.mentee_id);
    const network = $("mentee-network");
    if (network) {
      network.href = `/ui/mentees/${encodeURIComponent(latest.mentee_id)}`;
      $("mentee-network-link").hidden = false;
    }
    say("relationship-status", "");
    const slider = $("version");
    slider.max = String(rel.latest);
    showVerification();
    loadTimeline().catch((error) => failed("timeline-status", error));
    const asked = Number(params.get("version"));
    if (!followHash()) showVersion(Number.isInteger(asked) && asked >= 1 ? asked : rel.latest, params.get("as_of") ? "keep" : "replace");
    slider.addEventListener("input", () => showVersion(Number(slider.value), "slide"));
    $("latest-version").addEventListener("click", () => showVersion(rel.latest, "push"));
    $("download-evidence").addEventListener("click", downloadEvidence);
    $("timeline").addEventListener("click", (event) => {
      const link = event.target.closest("a[data-version]");
      if (!link) return;
      event.preventDefault();
      showVersion(Number(link.dataset.version), "push");
      slider.focus();
    });
    window.addEventListener("hashchange", followHash);
    window.addEventListener("popstate", () => {
      const version = Number(new URLSearchParams(location.search).get("version")) || rel.latest;
      showVersion(version, "keep");
    });
  }

  // --- a mentee's mentoring network ---

  async function menteePage() {
    const menteeId = document.body.dataset.menteeId;
    say("network-status", "Loading…");
    let body;
    try {
      body = await json(`/v1/mentees/${encodeURIComponent(menteeId)}`);
    } catch (error) {
      failed("network-status", error);
      return;
    }
    say("network-status", "");
    const label = new Map(body.relationships.map((r, index) => [r.id, `#${index + 1}`]));
    const link = (id) => el("a", { href: `/ui/relationships/${encodeURIComponent(id)}` }, label.get(id) || id);
    const links = (ids) => {
      if (!ids.length) return "—";
      const span = el("span");
      ids.forEach((id, index) => span.append(index ? ", " : "", link(id)));
      return span;
    };
    facts($("network-facts"), [
      ["Relationships", String(body.relationships.length)],
      ["Current (not concluded)", String(body.current)],
      ["Mentors", String(body.mentors.length)],
      ["Cycles", String(body.cycles.length)],
    ]);
    $("mentors").replaceChildren(...(body.mentors.length ? body.mentors.map((m) => el("li", {}, m)) : [el("li", {}, "none selected yet")]));
    const rows = body.relationships.map((r) =>
      el("tr", {},
        el("td", {}, el("a", { href: `/ui/relationships/${encodeURIComponent(r.id)}` }, `${label.get(r.id)} · ${(r.opened_at || "").slice(0, 10)}`)),
        el("td", {}, r.mentor_id || "—"),
        el("td", {}, r.program_id || "—"),
        el("td", {}, el("span", { class: "phase-tag" }, r.phase + (r.paused ? " (paused)" : ""))),
        el("td", {}, r.outcome ? r.outcome.replace(/_/g, " ") : "—"),
        el("td", {}, r.predecessor_id ? (label.has(r.predecessor_id) ? link(r.predecessor_id) : "an earlier relationship") : "—"),
        el("td", {}, links(r.successors)),
      ),
    );
    document.querySelector("#network-relationships tbody").replaceChildren(...rows);
    $("cycles").replaceChildren(...body.cycles.map((cycle) => {
      const item = el("li");
      cycle.forEach((id, index) => item.append(index ? " → " : "", link(id)));
      return item;
    }));
  }

  // --- program health ---

  function barChart(figureId, title, rows, unit, legend) {
    // rows: {label, value, text} and, for a second series, value2 / text2
    const twin = rows.some((r) => r.value2 !== undefined);
    const max = Math.max(1, ...rows.flatMap((r) => [r.value || 0, r.value2 || 0]));
    const labelWidth = 130, barWidth = 300, bar = 18, rowHeight = twin ? 2 * bar + 10 : bar + 10;
    const height = rows.length * rowHeight + 8;
    const chart = svg("svg", { viewBox: `0 0 ${labelWidth + barWidth + 90} ${height}`, role: "img", "aria-label": `${title} (the table below has the numbers)` });
    const drawBar = (y, value, text, className) => {
      const width = value ? Math.max(2, Math.round((value / max) * barWidth)) : 0;
      chart.append(svg("rect", { class: className, x: labelWidth, y, width, height: bar }));
      chart.append(svg("text", { x: labelWidth + width + 6, y: y + 14 }, value === null || value === undefined ? "no data" : `${text}${unit || ""}`));
    };
    rows.forEach((row, i) => {
      const y = 4 + i * rowHeight;
      chart.append(svg("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end" }, row.label));
      drawBar(y, row.value, row.text, "bar");
      if (twin) drawBar(y + bar + 2, row.value2, row.text2, "bar second");
    });
    const parts = [chart];
    if (legend) {
      parts.push(el("figcaption", { class: "legend" }, el("span", { class: "swatch first" }), legend[0], el("span", { class: "swatch second" }), legend[1]));
    }
    $(figureId).replaceChildren(...parts);
  }

  function table(id, headings, rows) {
    const node = $(id);
    node.tHead.replaceChildren(el("tr", {}, ...headings.map((h, i) => el("th", { scope: "col", class: i ? "num" : null }, h))));
    node.tBodies[0].replaceChildren(...rows.map((row) => el("tr", {}, ...row.map((cell, i) => (i ? el("td", { class: "num" }, cell) : el("th", { scope: "row" }, cell))))));
  }

  const days = (seconds) => (seconds === null || seconds === undefined ? null : Math.round((seconds / 86400) * 10) / 10);

  async function statsPage() {
    say("stats-status", "Loading…");
    let stats, atRisk;
    try {
      [stats, atRisk] = await Promise.all([
        json("/v1/stats/phases"),
        allPages("/v1/relationships?at_risk=true&limit=500"),
      ]);
    } catch (error) {
      failed("stats-status", error);
      return;
    }
    say("stats-status", `${stats.relationships} relationships.`);
    const funnel = stats.funnel || [];
    barChart("funnel-chart", "Phase funnel", funnel.map((f) => ({ label: f.phase, value: f.reached, text: String(f.reached) })));
    table("funnel-table", ["Phase", "Reached", "Share", "Now in phase"], funnel.map((f) => [
      f.phase, String(f.reached), f.share === null ? "—" : `${Math.round(f.share * 100)}%`,
      String((stats.phases[f.phase] || {}).count ?? 0),
    ]));
    const times = Object.entries(stats.time_in_phase || {});
    barChart("time-chart", "Days in each phase: median and 90th percentile", times.map(([phase, t]) => ({
      label: phase, value: days(t.median_seconds), text: String(days(t.median_seconds)),
      value2: days(t.p90_seconds), text2: String(days(t.p90_seconds)),
    })), " d", ["median", "90th percentile"]);
    table("time-table", ["Phase", "Median (days)", "90th percentile (days)", "Completed stays", "Open stays"], times.map(([phase, t]) => [
      phase, days(t.median_seconds) === null ? "—" : String(days(t.median_seconds)),
      days(t.p90_seconds) === null ? "—" : String(days(t.p90_seconds)), String(t.completed_stays), String(t.open_stays),
    ]));
    const outcomes = Object.entries(stats.outcomes || {});
    barChart("outcomes-chart", "Outcomes", outcomes.map(([name, n]) => ({ label: name, value: n, text: String(n) })));
    table("outcomes-table", ["Outcome", "Relationships"], outcomes.map(([name, n]) => [name, String(n)]));
    const reasons = new Map();
    for (const item of atRisk) for (const reason of item.risk_reasons || []) reasons.set(reason.code, (reasons.get(reason.code) || 0) + 1);
    const risk = [...reasons.entries()].sort((a, b) => b[1] - a[1]);
    barChart("risk-chart", "At risk, by reason", risk.map(([code, n]) => ({ label: code, value: n, text: String(n) })));
    table("risk-table", ["Reason", "Relationships"], [...risk.map(([code, n]) => [code, String(n)]), ["at risk (any reason)", String(atRisk.length)]]);
  }

  // --- start ---

  function start() {
    const page = document.body.dataset.page;
    if (page === "relationships") relationshipsPage();
    else if (page === "relationship") relationshipPage();
    else if (page === "stats") statsPage();
    else if (page === "mentee") menteePage();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => {
      signOut("Signed out.");
    });
    const filters = $("filters");
    if (filters) {
      filters.addEventListener("submit", applyFilters);
      $("clear-filters").addEventListener("click", () => {
        filters.reset();
        go(Object.fromEntries([...FILTERS, "cursor"].map((n) => [n, null])));
      });
      window.addEventListener("popstate", relationshipsPage);
    }
    if (token()) {
      showSignedIn(true);
      start();
    } else {
      showSignedIn(false);
      const notice = sessionStorage.getItem(NOTICE_KEY);
      sessionStorage.removeItem(NOTICE_KEY);
      if (notice) say("sign-in-error", notice);
    }
  });
})();
