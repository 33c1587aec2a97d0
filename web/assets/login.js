// The login page: trades an API key or a JWT for a session cookie.
"use strict";

(() => {
  const form = document.getElementById("login");
  const message = document.getElementById("message");
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only a path on this site: never somewhere else.
  const target = next.startsWith("/") && !next.startsWith("//") ? next : "/";
  form.onsubmit = async (event) => {
    event.preventDefault();
    const credential = document.getElementById("credential").value.trim();
    const body = credential.startsWith("edk_") ? { key: credential } : { token: credential };
    message.textContent = "signing in…";
    const r = await fetch("/v1/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (r.ok) {
      location.assign(target);
      return;
    }
    const answer = await r.json().catch(() => ({}));
    message.textContent = (answer.error && answer.error.message) || `refused (${r.status})`;
  };
})();
