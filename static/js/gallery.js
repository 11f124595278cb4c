// My photos: a lightbox with previous/next, and "Not me" without a page reload.
// Everything here is an enhancement: without JavaScript, a tile opens its preview image and
// "Not me" posts a form that redirects back to the same page.
(() => {
  "use strict";
  const gallery = document.getElementById("gallery");
  const dialog = document.getElementById("lightbox");
  // Each thumbnail's placeholder colour, painted from JavaScript: the CSP forbids style="".
  if (gallery) {
    gallery.querySelectorAll(".tile-open").forEach((link) => {
      if (link.dataset.placeholder) link.querySelector("img").style.backgroundColor = link.dataset.placeholder;
    });
  }
  if (!gallery || !dialog || typeof dialog.showModal !== "function") return;

  const image = dialog.querySelector("[data-lightbox-image]");
  const counter = dialog.querySelector("[data-lightbox-counter]");
  const download = dialog.querySelector("[data-lightbox-download]");
  const status = document.getElementById("gallery-status");
  let current = -1;
  let opener = null;

  const links = () => Array.from(gallery.querySelectorAll(".tile-open"));

  function preload(link) {
    if (link) new Image().src = link.href;
  }

  function show(index) {
    const all = links();
    if (!all.length) {
      dialog.close();
      return;
    }
    current = (index + all.length) % all.length;
    const link = all[current];
    image.style.backgroundColor = link.dataset.placeholder || "";
    image.src = link.href;
    image.alt = link.querySelector("img").alt;
    download.href = link.dataset.original;
    counter.textContent = `${current + 1} of ${all.length}`;
    preload(all[(current + 1) % all.length]);
    preload(all[(current - 1 + all.length) % all.length]);
  }

  function open(link) {
    opener = link;
    show(links().indexOf(link));
    if (!dialog.open) dialog.showModal();
  }

  gallery.addEventListener("click", (event) => {
    const link = event.target.closest(".tile-open");
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    open(link);
  });

  dialog.querySelector("[data-lightbox-prev]").addEventListener("click", () => show(current - 1));
  dialog.querySelector("[data-lightbox-next]").addEventListener("click", () => show(current + 1));
  dialog.querySelector("[data-lightbox-close]").addEventListener("click", () => dialog.close());
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") {
      event.preventDefault();
      show(current - 1);
    } else if (event.key === "ArrowRight") {
      event.preventDefault();
      show(current + 1);
    }
  });
  // A click on the dark area around the photo closes it, as people expect.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog || event.target.classList.contains("lightbox-stage")) dialog.close();
  });
  dialog.addEventListener("close", () => {
    image.removeAttribute("src");
    const all = links();
    const back = all[current] || all[all.length - 1] || opener;
    if (back && back.isConnected) back.focus();
  });

  let touchX = null;
  dialog.addEventListener("touchstart", (event) => {
    touchX = event.changedTouches[0].clientX;
  }, { passive: true });
  dialog.addEventListener("touchend", (event) => {
    if (touchX === null) return;
    const dx = event.changedTouches[0].clientX - touchX;
    touchX = null;
    if (Math.abs(dx) > 50) show(current + (dx < 0 ? 1 : -1));
  });

  function announce(text) {
    if (!status) return;
    const note = document.createElement("p");
    note.className = "notice notice-info";
    note.textContent = text;
    status.replaceChildren(note);
  }

  function countDown() {
    const count = document.getElementById("photo-count");
    if (!count) return;
    const left = Math.max(0, Number(count.dataset.count) - 1);
    count.dataset.count = String(left);
    count.textContent = count.textContent.replace(/^\d+ photos?/, `${left} photo${left === 1 ? "" : "s"}`);
  }

  gallery.addEventListener("submit", async (event) => {
    const form = event.target.closest(".not-me-form");
    if (!form) return;
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    let response;
    try {
      response = await fetch(form.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value,
          Accept: "application/json",
        },
      });
    } catch {
      form.submit();  // the network failed: the plain form still works
      return;
    }
    // 404: already gone (another tab said "not me" first); either way it leaves this gallery.
    if (response.status !== 204 && response.status !== 404) {
      form.submit();
      return;
    }
    const tile = form.closest(".tile");
    const next = tile.nextElementSibling || tile.previousElementSibling;
    tile.remove();
    countDown();
    announce("Removed. That photo will not come back to your gallery.");
    if (next) {
      next.querySelector(".tile-open").focus();
    } else {
      window.location.reload();  // the page is empty now: show what is happening instead
    }
  });
})();
