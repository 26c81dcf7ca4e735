"use strict";
const form = document.getElementById("login");
const err = document.getElementById("err");
const MESSAGES = {401: "Wrong user name or password.", 429: "Too many attempts: try again later.", 403: "Sign-in refused."};
form.addEventListener("submit", async e => {
  e.preventDefault();
  err.hidden = true;
  const data = new FormData(form);
  const r = await fetch("/login", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({name: data.get("name"), password: data.get("password")})});
  if (r.ok) { location.href = "/"; return; }
  err.textContent = MESSAGES[r.status] || `Sign-in failed (${r.status}).`;
  err.hidden = false;
});
