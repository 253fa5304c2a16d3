// Make It Move dashboard: the live queue (Server-Sent Events) and confirmations. No build step, no framework.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});

function followQueue() {
  const state = document.getElementById("live-state");
  const live = document.getElementById("queue-live");
  if (!state || !live || !window.EventSource) return;
  const stream = new EventSource(state.dataset.stream);
  stream.addEventListener("queue", (event) => {
    live.innerHTML = event.data;
    state.classList.remove("offline");
    state.textContent = "Live: the table follows the engine as jobs move.";
  });
  stream.addEventListener("signedout", () => {
    stream.close();
    window.location.assign("/admin/signin?next=" + encodeURIComponent(window.location.pathname));
  });
  stream.onerror = () => {
    // EventSource reconnects by itself; say so meanwhile.
    state.classList.add("offline");
    state.textContent = "Reconnecting to the engine…";
  };
}

document.addEventListener("DOMContentLoaded", followQueue);
