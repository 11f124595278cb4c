// Queue statistics: refresh the figures every 5 s from the staff API.
(function () {
  function read(obj, path) { return path.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, obj); }
  function refresh() {
    fetch("/api/admin/queue/stats/", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (stats) {
        document.querySelectorAll("[data-key]").forEach(function (cell) {
          var value = read(stats, cell.dataset.key);
          cell.textContent = value == null ? "—" : value;
        });
        document.getElementById("refreshed").textContent = "Last refresh: " + new Date().toLocaleTimeString();
      })
      .catch(function () { document.getElementById("refreshed").textContent = "Refresh failed; retrying."; });
  }
  setInterval(refresh, 5000);
})();
