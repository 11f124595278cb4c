// A "Print" button without an inline onclick (the CSP forbids inline script).
document.querySelectorAll("[data-print]").forEach((button) => {
  button.addEventListener("click", () => window.print());
});
