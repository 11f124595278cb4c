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

  // Checking a selfie takes seconds: say so, and keep the button from being pressed twice.
  const form = document.getElementById("selfie-form");
  const submit = document.getElementById("selfie-submit");
  const busy = document.getElementById("selfie-busy");
  if (form && submit) {
    form.addEventListener("submit", (event) => {
      if (submit.disabled) {
        event.preventDefault();
        return;
      }
      submit.disabled = true;
      form.setAttribute("aria-busy", "true");
      const spinner = document.createElement("span");
      spinner.className = "spinner";
      spinner.setAttribute("aria-hidden", "true");
      submit.replaceChildren(spinner, document.createTextNode("Checking your selfie…"));
      if (busy) busy.textContent = "Checking your selfie: this takes a few seconds.";
    });
    // Back from the browser's cache (the back button): the form is usable again.
    window.addEventListener("pageshow", (event) => {
      if (!event.persisted) return;
      submit.disabled = false;
      form.removeAttribute("aria-busy");
      submit.textContent = "Save my selfie";
      if (busy) busy.textContent = "";
    });
  }

  // While the selfie is being read, check now and then; once it is ready, go to the gallery.
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
      if (me.selfie_status === "indexed") {
        clearInterval(timer);
        window.location.assign(box.dataset.galleryUrl);
      } else if (me.selfie_status && me.selfie_status !== box.dataset.status) {
        clearInterval(timer);
        window.location.reload();
      }
    } catch {
      // offline for a moment: try again at the next tick
    }
  }, 2000);
})();
