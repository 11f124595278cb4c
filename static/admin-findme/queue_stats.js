// Queue statistics: every 5 s, the page's live figures again, as the server formats them.
(() => {
  "use strict";
  const live = document.getElementById("queue-live");
  if (!live) return;
  const refresh = async () => {
    try {
      const response = await fetch(live.dataset.refreshUrl, { credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      live.innerHTML = await response.text();
    } catch {
      const note = live.querySelector(".findme-refreshed");
      if (note) note.textContent = "The last refresh failed; trying again in 5 seconds.";
    }
  };
  setInterval(refresh, 5000);
})();
