// The interactive API documentation at /docs: Swagger UI, shipped inside the package (no CDN).
// A separate file because the CSP allows no inline script.
let csrf = null; // "Try it out" with the browser's sign-in: changes need the page's CSRF token

async function loadCsrf() {
  try {
    const r = await fetch("/me", { credentials: "same-origin" });
    if (r.ok) csrf = (await r.json()).csrf_token || null;
  } catch { /* not signed in by cookie: API keys need no token */ }
}

window.addEventListener("DOMContentLoaded", () => {
  loadCsrf();
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // Swagger UI would otherwise load a badge from validator.swagger.io
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: (request) => {
      if (csrf && !["GET", "HEAD"].includes((request.method || "GET").toUpperCase())) request.headers["X-Flexi-CSRF"] = csrf;
      return request;
    },
  });
});
