// The API docs page (/docs): Swagger UI on this server's OpenAPI description. A file
// of its own rather than an inline script, so the Content-Security-Policy allows
// scripts from this origin only.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
});
