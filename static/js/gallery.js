// My photos: a lightbox with previous/next; "Not me" without a page reload, with an Undo for a
// few seconds; every count on the page kept true; selecting several photos to download (or
// share) at once; sharing a photo's file where the browser can (Web Share API).
// Everything here is an enhancement: without JavaScript, a tile opens its preview image,
// Download downloads, and "Not me" posts a form whose answer offers the undo.
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

  const UNDO_SECONDS = 10;  // the server allows minutes (faces.services.matching.RESTORE_WINDOW)
  const SHARE_MAX = 10;  // files fetched into memory for one share
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const undoBar = document.getElementById("undo-bar");
  const image = dialog.querySelector("[data-lightbox-image]");
  const counter = dialog.querySelector("[data-lightbox-counter]");
  const download = dialog.querySelector("[data-lightbox-download]");
  const shareButton = dialog.querySelector("[data-lightbox-share]");
  const notMeButton = dialog.querySelector("[data-lightbox-not-me]");
  const selectStart = document.querySelector("[data-select-start]");
  const selection = document.getElementById("selection-form");
  let current = -1;
  let opener = null;

  const tiles = () => Array.from(gallery.querySelectorAll("li.tile:not([hidden])"));
  const linkOf = (tile) => tile.querySelector(".tile-open");

  // --- counts ---------------------------------------------------------------------------------
  // The heading counts the whole gallery, every page of it: this page's tiles coming and going
  // (removed here, or added by another script) move it by as much.
  const countNote = document.getElementById("photo-count");
  const total0 = countNote ? Number(countNote.dataset.count) : 0;
  const shown0 = tiles().length;
  const zipAll = document.getElementById("zip-all");

  function recount() {
    const shown = tiles().length;
    const total = Math.max(0, total0 + shown - shown0);
    if (countNote) {
      countNote.dataset.count = String(total);
      countNote.textContent = countNote.textContent.replace(/^\d+ photos?/, `${total} photo${total === 1 ? "" : "s"}`);
    }
    if (zipAll) {
      zipAll.querySelector("[data-zip-label]").textContent = `Download all${total > 1 ? ` ${total}` : ""} (zip)`;
      zipAll.hidden = total === 0;
    }
    gallery.querySelectorAll(".gallery-group").forEach((group) => {
      const empty = !group.querySelector("li.tile:not([hidden])");
      if (group.hidden !== empty) group.hidden = empty;
    });
    if (dialog.open && shown) counter.textContent = `${current + 1} of ${shown}`;
    selectionCount();
  }
  new MutationObserver(recount).observe(gallery, { childList: true, subtree: true });

  // --- lightbox -------------------------------------------------------------------------------
  function preload(tile) {
    if (tile) new Image().src = linkOf(tile).href;
  }

  function show(index) {
    const all = tiles();
    if (!all.length) {
      dialog.close();
      return;
    }
    current = (index + all.length) % all.length;
    const link = linkOf(all[current]);
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
    show(tiles().indexOf(link.closest(".tile")));
    if (!dialog.open) dialog.showModal();
    // A modal dialog makes the rest of the page inert: the undo notice must be inside it.
    dialog.append(undoBar);
  }

  gallery.addEventListener("click", (event) => {
    const link = event.target.closest(".tile-open");
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    if (selecting()) {
      link.closest(".tile").querySelector(".tile-select input").click();
    } else {
      open(link);
    }
  });

  dialog.querySelector("[data-lightbox-prev]").addEventListener("click", () => show(current - 1));
  dialog.querySelector("[data-lightbox-next]").addEventListener("click", () => show(current + 1));
  dialog.querySelector("[data-lightbox-close]").addEventListener("click", () => dialog.close());
  dialog.addEventListener("keydown", (event) => {
    if (event.target.closest(".undo-notice")) return;
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
    gallery.before(undoBar);
    const all = tiles();
    const back = all[current] || all[all.length - 1];
    const target = back ? linkOf(back) : opener;
    if (target && target.isConnected && !target.closest("[hidden]")) target.focus();
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

  // --- notices (and the undo) -----------------------------------------------------------------
  let notice = null;  // { element, timer, finish }

  function noticeEnd() {
    if (!notice) return;
    const ending = notice;
    notice = null;
    clearTimeout(ending.timer);
    const hadFocus = ending.element.contains(document.activeElement);
    ending.element.remove();
    if (ending.finish) ending.finish();
    if (hadFocus) {
      const next = dialog.open ? dialog.querySelector("[data-lightbox-close]") : tiles()[0] && linkOf(tiles()[0]);
      if (next) next.focus();
    }
  }

  // Text in the notice area, with an Undo button when ``undo`` is given; it goes after
  // UNDO_SECONDS, but not while the pointer or the focus is on it. ``finish`` runs when it goes.
  function say(text, { undo = null, finish = null, focus = false } = {}) {
    noticeEnd();
    const element = document.createElement("div");
    element.className = "undo-notice";
    const words = document.createElement("p");
    words.textContent = text;
    element.append(words);
    if (undo) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button button-small";
      button.textContent = "Undo";
      button.addEventListener("click", undo);
      element.append(button);
    }
    const dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "button button-small undo-dismiss";
    dismiss.setAttribute("aria-label", "Dismiss");
    dismiss.textContent = "×";
    dismiss.addEventListener("click", noticeEnd);
    element.append(dismiss);
    undoBar.replaceChildren(element);
    const entry = { element, timer: null, finish };
    notice = entry;
    const wait = () => {
      clearTimeout(entry.timer);
      entry.timer = setTimeout(() => {
        if (notice === entry) noticeEnd();
      }, UNDO_SECONDS * 1000);
    };
    const hold = () => clearTimeout(entry.timer);
    element.addEventListener("pointerenter", hold);
    element.addEventListener("pointerleave", () => {
      if (!element.contains(document.activeElement)) wait();
    });
    element.addEventListener("focusin", hold);
    element.addEventListener("focusout", (event) => {
      if (!element.contains(event.relatedTarget)) wait();
    });
    wait();
    if (focus && undo) element.querySelector("button").focus();
  }

  function post(url) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, Accept: "application/json" },
    });
  }

  // --- "Not me", and its undo -----------------------------------------------------------------
  async function notMe(tile, fromKeyboard) {
    // A double tap would otherwise send two, and the second one's 404 would end the undo.
    if (tile.dataset.pending) return;
    tile.dataset.pending = "not-me";
    const form = tile.querySelector(".not-me-form");
    let response;
    try {
      response = await post(form.dataset.api);
    } catch {
      delete tile.dataset.pending;
      if (!dialog.open) form.submit();  // the network failed: the plain form still works
      else say("Could not reach FindMe. Check your connection and try again.");
      return;
    }
    delete tile.dataset.pending;
    // 404: already gone (another tab said "not me" first); either way it leaves this gallery.
    if (response.status !== 204 && response.status !== 404) {
      say("That did not work. Try again in a moment.");
      return;
    }
    const inLightbox = dialog.open;
    const index = tiles().indexOf(tile);
    const after = tiles()[index + 1] || tiles()[index - 1];
    tile.hidden = true;
    recount();
    if (inLightbox) show(Math.min(index, tiles().length - 1));
    else if (after && !fromKeyboard) linkOf(after).focus({ preventScroll: true });
    if (response.status === 404) {
      say("That photo was already gone from your gallery.", { finish: () => finalRemove(tile) });
      return;
    }
    say("Removed from your gallery.", {
      undo: () => undo(tile),
      finish: () => finalRemove(tile),
      focus: fromKeyboard || inLightbox,
    });
  }

  // The undo time is over: the tile goes for good (and an emptied page shows why it is empty).
  function finalRemove(tile) {
    if (!tile.hidden) return;
    tile.remove();
    if (!tiles().length && !dialog.open) window.location.reload();
  }

  async function undo(tile) {
    const ending = notice;
    if (ending) {
      ending.finish = null;  // the tile stays, whatever the answer
      noticeEnd();
    }
    let response = null;
    try {
      response = await post(tile.querySelector(".not-me-form").dataset.undoApi);
    } catch {
      response = null;
    }
    if (!response || response.status !== 204) {
      finalRemove(tile);
      say(response ? "That can no longer be undone." : "Could not reach FindMe; the photo stays removed.");
      return;
    }
    tile.hidden = false;
    recount();
    say("The photo is back in your gallery.");
    if (dialog.open) show(tiles().indexOf(tile));
    else linkOf(tile).focus();
  }

  let keyboardSubmit = false;
  gallery.addEventListener("keydown", (event) => {
    keyboardSubmit = event.key === "Enter" || event.key === " ";
  });
  gallery.addEventListener("pointerdown", () => {
    keyboardSubmit = false;
  });
  gallery.addEventListener("submit", (event) => {
    const form = event.target.closest(".not-me-form");
    if (!form) return;
    event.preventDefault();
    notMe(form.closest(".tile"), keyboardSubmit);
  });
  notMeButton.addEventListener("click", () => {
    const tile = tiles()[current];
    if (tile) notMe(tile, true);
  });

  // --- selecting several ----------------------------------------------------------------------
  const boxes = () => Array.from(gallery.querySelectorAll(".tile-select input"));
  const selecting = () => gallery.classList.contains("selecting");
  const selectedTiles = () => boxes().filter((box) => box.checked).map((box) => box.closest(".tile"));

  function selectionCount() {
    if (!selection) return;
    const n = selectedTiles().length;
    selection.querySelector("[data-selected-count]").textContent = String(n);
    selection.querySelector("[data-selection-download]").disabled = n === 0;
    selection.querySelector("[data-selection-share]").disabled = n === 0 || n > SHARE_MAX;
  }

  function selectMode(on) {
    gallery.classList.toggle("selecting", on);
    selection.hidden = !on;
    selectStart.setAttribute("aria-pressed", String(on));
    // In selection mode a tap on a photo ticks it; keyboards use the boxes themselves.
    gallery.querySelectorAll(".tile-open").forEach((link) => {
      if (on) link.setAttribute("tabindex", "-1");
      else link.removeAttribute("tabindex");
    });
    if (!on) boxes().forEach((box) => { box.checked = false; });
    selectionCount();
    if (on) {
      noticeEnd();
      const first = boxes().find((box) => !box.closest("[hidden]"));
      if (first) first.focus();
    } else {
      selectStart.focus();
    }
  }

  if (selectStart && selection) {
    selectStart.hidden = false;
    selectStart.setAttribute("aria-pressed", "false");
    selectStart.addEventListener("click", () => selectMode(!selecting()));
    selection.querySelector("[data-select-end]").addEventListener("click", () => selectMode(false));
    gallery.addEventListener("change", (event) => {
      if (event.target.closest(".tile-select")) selectionCount();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && selecting() && !dialog.open) selectMode(false);
    });
    selection.addEventListener("submit", (event) => {
      if (!selectedTiles().length) event.preventDefault();
    });
  }

  // --- sharing the file itself (Web Share API level 2), where the browser can ---------------
  function canShareFiles() {
    if (!navigator.canShare || !navigator.share) return false;
    try {
      return navigator.canShare({ files: [new File(["x"], "photo.jpg", { type: "image/jpeg" })] });
    } catch {
      return false;
    }
  }

  const fetched = new Map();  // photo id -> File: a second tap shares at once

  async function fileOf(tile) {
    const id = tile.dataset.photoId;
    if (!fetched.has(id)) {
      const response = await fetch(linkOf(tile).dataset.original, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`status ${response.status}`);
      const blob = await response.blob();
      fetched.set(id, new File([blob], tile.dataset.name, { type: blob.type || "image/jpeg" }));
    }
    return fetched.get(id);
  }

  async function share(list, button) {
    if (!list.length) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    let files;
    try {
      files = [];
      for (const tile of list) files.push(await fileOf(tile));
    } catch {
      say("Could not fetch the photo to share. Check your connection and try again.");
      return;
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      selectionCount();
    }
    if (!navigator.canShare({ files })) {
      say("This browser cannot share these photos; download them instead.");
      return;
    }
    try {
      await navigator.share({ files });
    } catch (error) {
      // A slow download can outlast the tap that asked for it: the files are here now.
      if (error.name === "NotAllowedError") say("Ready to share: tap Share again.");
      else if (error.name !== "AbortError") say("Sharing did not work; download the photo instead.");
    }
  }

  if (canShareFiles()) {
    shareButton.hidden = false;
    shareButton.addEventListener("click", () => {
      const tile = tiles()[current];
      if (tile) share([tile], shareButton);
    });
    if (selection) {
      const shareSelected = selection.querySelector("[data-selection-share]");
      shareSelected.hidden = false;
      shareSelected.addEventListener("click", () => share(selectedTiles(), shareSelected));
    }
  }
})();
