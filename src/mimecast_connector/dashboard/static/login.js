// The login form: the token goes once, as an Authorization header, to /session, which
// answers with an HttpOnly cookie; the token itself is never stored by the page.
"use strict";
(function () {
  const form = document.getElementById("login");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const token = document.getElementById("token").value.trim();
    const answer = await fetch("/session", {
      credentials: "same-origin",
      headers: { Authorization: "Bearer " + token },
    });
    if (answer.ok) {
      window.location.href = "/";
    } else {
      error.textContent = "The token was refused: give metrics_token, or the --token-file's.";
    }
  });
})();
