// The audit review page: plain JavaScript against /admin/audit, no build step, no framework.
// The bearer token lives in this tab's sessionStorage and goes only to this origin.
"use strict";

const TOKEN = "vagt-audit-token";
const $ = (selector) => document.querySelector(selector);
const state = { records: [], cursor: null, sortKey: "time", ascending: false };

function token() { return sessionStorage.getItem(TOKEN); }

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  if (response.status === 401) { signOut("Your token was refused; sign in again."); throw new Error("unauthorized"); }
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function filters() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($("#filters"))) if (value.trim()) params.set(name, value.trim());
  return params;
}

async function search(more = false) {
  $("#message").textContent = "";
  const params = filters();
  if (more && state.cursor) params.set("cursor", state.cursor);
  try {
    const page = await (await api(`/admin/audit?${params}`)).json();
    state.records = more ? state.records.concat(page.records) : page.records;
    state.cursor = page.next_cursor;
    render();
  } catch (error) { if (error.message !== "unauthorized") $("#message").textContent = error.message; }
}

function value(record, key) {
  if (key === "tokens") return (record.prompt_tokens || 0) + (record.completion_tokens || 0);
  return record[key] ?? "";
}

function render() {
  const key = state.sortKey, sign = state.ascending ? 1 : -1;
  const rows = [...state.records].sort((a, b) => {
    const x = value(a, key), y = value(b, key);
    return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * sign;
  });
  for (const th of document.querySelectorAll("th")) {
    th.setAttribute("aria-sort", th.dataset.key === key ? (state.ascending ? "ascending" : "descending") : "none");
  }
  const body = $("#records tbody");
  body.replaceChildren(...rows.map((record) => {
    const tr = document.createElement("tr");
    tr.dataset.id = record.id;
    const cells = [record.time, record.subject ?? "—", record.action ?? record.route ?? "",
      record.model ?? "", record.decision, record.status,
      record.latency_us == null ? "" : (record.latency_us / 1000).toFixed(1), value(record, "tokens") || ""];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = String(text);  // never innerHTML: records hold caller-controlled text
      tr.append(td);
    }
    tr.children[4].className = `decision-${record.decision}`;
    tr.addEventListener("click", () => show(record.id));
    return tr;
  }));
  $("#count").textContent = `${rows.length} record(s)`;
  $("#more").hidden = !state.cursor;
}

async function show(id) {
  try {
    const record = await (await api(`/admin/audit/records/${encodeURIComponent(id)}`)).json();
    $("#detail-id").textContent = record.id;
    const fields = $("#detail-fields");
    fields.replaceChildren();
    for (const [name, field] of Object.entries(record)) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = field !== null && typeof field === "object" ? JSON.stringify(field) : String(field ?? "—");
      fields.append(dt, dd);
    }
    $("#detail-json").textContent = JSON.stringify(record, null, 2);
    $("#detail").hidden = false;
    $("#detail").scrollIntoView({ block: "nearest" });
  } catch (error) { if (error.message !== "unauthorized") $("#message").textContent = error.message; }
}

async function verify() {
  const banner = $("#chain");
  banner.className = "chain";
  banner.textContent = "chain: checking…";
  try {
    const report = await (await api("/admin/audit/verify")).json();
    const records = report.chains.reduce((sum, chain) => sum + chain.records, 0);
    const broken = report.chains.find((chain) => !chain.ok);
    banner.className = report.ok ? "chain ok" : "chain broken";
    banner.textContent = report.ok
      ? `chain verified: ${records} record(s) in ${report.chains.length} chain(s)`
      : `chain broken in ${broken.chain} at seq ${broken.broken_at}: ${broken.problem}`;
  } catch (error) { banner.textContent = `chain: ${error.message}`; }
}

async function exportAs(format) {
  const params = filters();
  params.delete("limit");
  params.set("format", format);
  try {
    const blob = await (await api(`/admin/audit/export?${params}`)).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `vagt-audit.${format}`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  } catch (error) { if (error.message !== "unauthorized") $("#message").textContent = error.message; }
}

function signIn() {
  $("#login").hidden = true;
  $("#review").hidden = false;
  $("#logout").hidden = false;
  search();
  verify();
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN);
  state.records = [];
  $("#login").hidden = false;
  $("#review").hidden = true;
  $("#logout").hidden = true;
  $("#login-error").textContent = message;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, $("#token").value.trim());
    $("#token").value = "";
    signIn();
  });
  $("#logout").addEventListener("click", () => signOut());
  $("#filters").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("#more").addEventListener("click", () => search(true));
  $("#verify").addEventListener("click", verify);
  $("#export-csv").addEventListener("click", () => exportAs("csv"));
  $("#export-jsonl").addEventListener("click", () => exportAs("jsonl"));
  $("#close-detail").addEventListener("click", () => { $("#detail").hidden = true; });
  for (const th of document.querySelectorAll("th")) {
    th.addEventListener("click", () => {
      state.ascending = state.sortKey === th.dataset.key ? !state.ascending : true;
      state.sortKey = th.dataset.key;
      render();
    });
  }
  if (token()) signIn();
});
