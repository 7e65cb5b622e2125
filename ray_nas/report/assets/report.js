(function () {
  "use strict";
  var sections = document.querySelectorAll("details.section");
  function setAll(open) { sections.forEach(function (s) { s.open = open; }); }
  document.getElementById("expand-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { setAll(false); });
  var seeds = document.getElementById("show-seeds");
  seeds.addEventListener("change", function () { document.body.classList.toggle("show-seeds", seeds.checked); });
  var filter = document.getElementById("trial-filter");
  filter.addEventListener("input", function () {
    var q = filter.value.toLowerCase();
    document.querySelectorAll("#trial-table tbody tr").forEach(function (row) {
      row.hidden = q !== "" && row.textContent.toLowerCase().indexOf(q) < 0;
    });
  });
})();
