// Selfie page: show which photo was chosen, focus an error, and follow the selfie's status.
(() => {
  "use strict";
  const error = document.getElementById("selfie-error");
  if (error) error.focus();

  const inputs = Array.from(document.querySelectorAll("#selfie-form input[type=file]"));
  const chosen = document.getElementById("file-chosen");
  let previewUrl = null;
  for (const input of inputs) {
    input.addEventListener("change", () => {
      const file = input.files && input.files[0];
      // Two inputs (camera, file picker) share one name: keep only the latest choice.
      for (const other of inputs) if (other !== input) other.value = "";
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      chosen.replaceChildren();
      if (!file) return;
      previewUrl = URL.createObjectURL(file);
      const thumb = document.createElement("img");
      thumb.alt = "";
      thumb.src = previewUrl;
      thumb.onerror = () => thumb.remove();  // e.g. HEIC, which the browser cannot show
      const text = document.createElement("span");
      text.textContent = `Chosen: ${file.name}`;
      chosen.append(thumb, text);
    });
  }

  // While the selfie is being read, check now and then and reload once it is done.
  const box = document.getElementById("selfie-status");
  if (!box || !["queued", "indexing"].includes(box.dataset.status)) return;
  let tries = 0;
  const timer = setInterval(async () => {
    tries += 1;
    if (tries > 60) {
      clearInterval(timer);
      return;
    }
    try {
      const response = await fetch(box.dataset.statusUrl, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) return;
      const me = await response.json();
      if (me.selfie_status && me.selfie_status !== box.dataset.status) {
        clearInterval(timer);
        window.location.reload();
      }
    } catch {
      // offline for a moment: try again at the next tick
    }
  }, 3000);
})();
