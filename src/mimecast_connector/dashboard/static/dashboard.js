// The streams table: one page of tenants from /api/streams, with the search box, the health
// filter and paging. Every value is written as a text node (textContent), never as HTML, so
// a tenant name or an error text can only ever show as text.
"use strict";
(function () {
  const body = document.getElementById("streams-body");
  const search = document.getElementById("search");
  const health = document.getElementById("health");
  const info = document.getElementById("page-info");
  const prev = document.getElementById("prev");
  const next = document.getElementById("next");
  const counts = document.getElementById("state-counts");
  const url = new URL(window.location.href);
  const view = {
    page: Number(url.searchParams.get("page") || 1),
    q: url.searchParams.get("q") || "",
    health: url.searchParams.get("health") || "",
  };
  search.value = view.q;
  health.value = view.health;
  let asked = 0;

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "-" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    if (seconds < 120) return Math.round(seconds) + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").replace("Z", "Z") : "-";
  }

  function render(data) {
    body.replaceChildren();
    counts.replaceChildren();
    for (const [state, n] of Object.entries(data.states)) {
      const span = document.createElement("span");
      span.className = "count state-" + state;
      span.dataset.state = state;
      span.textContent = state + " " + n;
      counts.appendChild(span);
    }
    if (data.tenants.length === 0) {
      const row = document.createElement("tr");
      const td = cell(row, "no tenant matches");
      td.colSpan = 11;
      body.appendChild(row);
    }
    for (const tenant of data.tenants) {
      tenant.streams.forEach(function (s, index) {
        const row = document.createElement("tr");
        row.className = "stream state-" + s.state;
        row.dataset.tenant = s.tenant;
        row.dataset.category = s.category;
        row.dataset.state = s.state;
        const name = document.createElement("td");
        if (index === 0) {
          const link = document.createElement("a");
          link.href = "/?tenant=" + encodeURIComponent(s.tenant);
          link.textContent = s.tenant;
          name.appendChild(link);
        }
        row.appendChild(name);
        cell(row, s.category);
        cell(row, s.state, "health");
        cell(row, when(s.since));
        const why = cell(row, s.reason, "reason");
        if (s.advice) {
          const advice = document.createElement("div");
          advice.className = "advice";
          advice.textContent = s.advice;
          why.appendChild(advice);
        }
        cell(row, duration(s.lag_seconds), "n");
        cell(row, when(s.last_success));
        cell(row, s.last_error ? when(s.last_error_at) + ": " + s.last_error : "-", "error");
        cell(row, s.alerts, "n");
        cell(row, s.dropped, "n");
        cell(row, s.dead_lettered, "n");
        body.appendChild(row);
      });
    }
    view.page = data.page;
    info.textContent =
      " page " + data.page + " of " + data.pages + " (" + data.tenants_matched + " of " +
      data.tenants_total + " tenants) ";
    prev.disabled = data.page <= 1;
    next.disabled = data.page >= data.pages;
    document.body.dataset.loaded = String(++asked);
  }

  async function load() {
    const params = new URLSearchParams({ page: String(view.page), q: view.q, health: view.health });
    const shown = new URL(window.location.href);
    for (const [k, v] of params) {
      if (v && !(k === "page" && v === "1")) shown.searchParams.set(k, v);
      else shown.searchParams.delete(k);
    }
    window.history.replaceState(null, "", shown);
    const answer = await fetch("/api/streams?" + params, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (answer.status === 401) {
      window.location.href = "/login";
      return;
    }
    if (!answer.ok) {
      body.replaceChildren();
      const row = document.createElement("tr");
      cell(row, "the dashboard could not read the state: " + (await answer.text())).colSpan = 11;
      body.appendChild(row);
      return;
    }
    render(await answer.json());
  }

  let typing = null;
  search.addEventListener("input", function () {
    clearTimeout(typing);
    typing = setTimeout(function () {
      view.q = search.value;
      view.page = 1;
      load();
    }, 250);
  });
  document.getElementById("filters").addEventListener("submit", function (event) {
    event.preventDefault();
  });
  health.addEventListener("change", function () {
    view.health = health.value;
    view.page = 1;
    load();
  });
  prev.addEventListener("click", function () {
    view.page -= 1;
    load();
  });
  next.addEventListener("click", function () {
    view.page += 1;
    load();
  });
  load();
  setInterval(load, 30000);
})();
