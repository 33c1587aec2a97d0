// Signing in and out. With authentication on, the pages and the API take
// the session cookie that POST /v1/login sets; an answer of 401 means it
// ended, so the page goes to the login page and comes back after.
"use strict";

(() => {
  const toLogin = () => {
    const next = location.pathname + location.search;
    location.assign(`/login?next=${encodeURIComponent(next)}`);
  };
  const fetchFirst = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const r = await fetchFirst(...args);
    if (r.status === 401 && location.pathname !== "/login") toLogin();
    return r;
  };
  addEventListener("DOMContentLoaded", async () => {
    const header = document.querySelector("header");
    if (!header) return;
    const status = await fetchFirst("/v1/status", { cache: "no-store" }).then((r) => r.json()).catch(() => null);
    if (!status || !status.gateway || !status.gateway.auth) return;
    const out = document.createElement("a");
    out.href = "#";
    out.id = "sign-out";
    out.textContent = "Sign out";
    out.onclick = async (event) => {
      event.preventDefault();
      await fetchFirst("/v1/logout", { method: "POST" });
      toLogin();
    };
    header.append(out);
  });
})();
