// TARS dashboard: live updates (server-sent events) and the action buttons. No framework.
"use strict";
(function () {
  const body = document.body;
  const prefix = body.dataset.prefix;
  const meta = document.querySelector('meta[name="csrf"]');
  const csrf = meta ? meta.content : "";

  function toast(text) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
    setTimeout(function () { box.hidden = true; }, 6000);
  }

  // Actions: POST with the session's CSRF token; the server checks it and the role.
  document.querySelectorAll("form.action").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf },
      }).then(function (reply) {
        return reply.json().then(function (data) { return [reply.status, data]; });
      }).then(function (got) {
        const status = got[0], data = got[1];
        const out = document.getElementById("action-result") || document.createElement("pre");
        out.id = "action-result";
        out.className = "small";
        out.textContent = status + " " + JSON.stringify(data);
        form.parentNode.appendChild(out);
        const held = form.closest(".held");
        if (held && status === 200 && data.decision) { // decided: the buttons go, the outcome stays
          held.querySelectorAll("form.action").forEach(function (f) { f.remove(); });
          const said = document.createElement("span");
          said.className = "decided";
          said.textContent = data.decision + "d by " + data.approver + " (" + (data.approvals || []).length +
            " of " + data.quorum + ")" + (data.adopted ? ": adopted" : "") + (data.rejected ? ": rejected" : "");
          held.insertBefore(said, out);
        }
        toast(status === 200 ? "done: " + (data.order || data.decision || "ok") : (data.error || status));
      }).catch(function (err) { toast(String(err)); });
    });
  });

  if (body.dataset.live !== "True" || !window.EventSource) return;
  const state = document.getElementById("live-state");
  const only = body.dataset.genome;
  const source = new EventSource(prefix + "/events?after=" + (body.dataset.after || "0"));
  source.onopen = function () { if (state) state.textContent = "live"; };
  source.onerror = function () { if (state) state.textContent = "reconnecting…"; };
  source.addEventListener("log", function (message) {
    const item = JSON.parse(message.data);
    body.dataset.after = item.seq;
    if (only && item.genome !== only) return;
    const table = document.getElementById("events");
    if (table && !table.querySelector('tr[data-seq="' + item.seq + '"]')) {
      const holder = document.createElement("tbody");
      holder.innerHTML = item.html; // rendered and escaped by the server's templates
      const row = holder.firstElementChild;
      row.classList.add("flash");
      table.insertBefore(row, table.firstChild);
    }
    if (item.head) {
      document.querySelectorAll('[data-head="' + CSS.escape(item.genome) + '"]').forEach(function (cell) {
        cell.textContent = item.head.slice(0, 12);
        cell.classList.add("flash");
      });
    }
  });
  source.addEventListener("status", function (message) {
    const swarm = document.getElementById("swarm");
    if (swarm) swarm.innerHTML = JSON.parse(message.data).html; // escaped by the server
  });
})();
