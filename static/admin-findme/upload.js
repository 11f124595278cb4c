// Staff upload from the event's admin page, through the same API and rules as the watcher:
// hash each file (SHA-256), ask which the event already has, send the rest 4 at a time, wait
// as long as Retry-After says when the queue is full, and show progress.
(() => {
  "use strict";
  const box = document.getElementById("findme-upload");
  if (!box) return;
  const input = box.querySelector("input[type=file]");
  const drop = box.querySelector("[data-drop]");
  const bar = box.querySelector("[data-progress]");
  const summary = box.querySelector("[data-summary]");
  const list = box.querySelector("[data-list]");
  const PARALLEL = 4;
  const MAX_TRIES = 5;

  const csrf = () => {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  };
  const headers = () => ({ "X-CSRFToken": csrf(), Accept: "application/json" });
  const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function sha256(file) {
    // crypto.subtle exists only in secure contexts (HTTPS, localhost); the server checks
    // duplicates by itself anyway.
    if (!window.crypto || !window.crypto.subtle) return null;
    return hex(await window.crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
  }

  function line(file) {
    const item = document.createElement("li");
    item.textContent = `${file.name}: waiting`;
    list.append(item);
    return (text, state) => {
      item.textContent = `${file.name}: ${text}`;
      item.dataset.state = state || "";
    };
  }

  async function upload(job) {
    for (let attempt = 1; attempt <= MAX_TRIES; attempt += 1) {
      const body = new FormData();
      body.append("file", job.file, job.file.name);
      if (job.sha) body.append("sha256", job.sha);
      let response;
      try {
        response = await fetch(box.dataset.uploadUrl, {
          method: "POST", body, headers: headers(), credentials: "same-origin",
        });
      } catch {
        job.say(`network error, try ${attempt} of ${MAX_TRIES}`, "retry");
        await sleep(2000 * attempt);
        continue;
      }
      if (response.status === 201) return job.say("uploaded", "new");
      if (response.status === 200) return job.say("already there", "duplicate");
      if (response.status === 503 || response.status === 429) {
        const wait = Number(response.headers.get("Retry-After")) || 5;
        job.say(`server busy, again in ${wait} s`, "retry");
        await sleep(wait * 1000);
        continue;
      }
      let message = `refused (${response.status})`;
      try {
        const error = (await response.json()).error;
        if (error && error.message) message = `refused: ${error.message}`;
      } catch {
        // not JSON: keep the status
      }
      return job.say(message, "failed");
    }
    return job.say("gave up after several tries", "failed");
  }

  async function send(files) {
    const images = [...files];
    if (!images.length) return;
    bar.hidden = false;
    bar.max = images.length;
    bar.value = 0;
    summary.textContent = `Checking ${images.length} photos…`;
    const jobs = [];
    for (const file of images) jobs.push({ file, say: line(file), sha: await sha256(file) });
    let known = new Set();
    const hashes = jobs.map((j) => j.sha).filter(Boolean);
    if (hashes.length) {
      try {
        const response = await fetch(box.dataset.checkUrl, {
          method: "POST",
          headers: { ...headers(), "Content-Type": "application/json" },
          credentials: "same-origin",
          body: JSON.stringify({ sha256: hashes.slice(0, 1000) }),
        });
        if (response.ok) known = new Set((await response.json()).existing);
      } catch {
        // the upload itself tells duplicates apart
      }
    }
    const todo = [];
    for (const job of jobs) {
      if (job.sha && known.has(job.sha)) {
        job.say("already there", "duplicate");
        bar.value += 1;
      } else {
        todo.push(job);
      }
    }
    const report = () => {
      const failed = list.querySelectorAll("[data-state=failed]").length;
      summary.textContent = `${bar.value} of ${images.length} done` + (failed ? `, ${failed} refused` : "");
    };
    report();
    const worker = async () => {
      while (todo.length) {
        const job = todo.shift();
        job.say("uploading", "busy");
        await upload(job);
        bar.value += 1;
        report();
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, todo.length) }, worker));
    report();
    input.value = "";
  }

  input.addEventListener("change", () => send(input.files));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("findme-drop-over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("findme-drop-over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("findme-drop-over");
    send(event.dataTransfer.files);
  });
})();
